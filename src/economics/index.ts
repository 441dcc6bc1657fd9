/**
 * Economics: the mana ledger. Accounts for members, nodes and the treasury; a regenerating manabar plus
 * non-regenerating credit; transfers, holds, releases and settlements (with a fee to the treasury), each debit
 * authorised by the member's own signed record; one writer per account (its home node's `ledger` chain); and
 * the projection that folds every node's ledger chain into the same tables on every node.
 */
export * from './errors.js'
export {
  type AccountView,
  Ledger,
  type LedgerComponents,
  type OpReceipt,
  parseInstant,
  type TransferReceipt,
} from './ledger.js'
export { type LedgerMetrics, ledgerMetrics } from './metrics.js'
export {
  genesisAccounts,
  LEDGER_BATCH_TYPE,
  LEDGER_CHAIN,
  LedgerBatchBody,
  type LedgerFoldListener,
  type LedgerSetup,
  ledgerProjection,
  ledgerSetup,
  MAX_BATCH_OPS,
} from './projection.js'
export * from './records.js'
export * from './rules.js'
export { ECONOMICS_MODULE } from './tables.js'
