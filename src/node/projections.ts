import {
  type LedgerFoldListener,
  ledgerProjection,
  ledgerSetup,
  type VerifiedRecords,
} from '../economics/index.js'
import type { Federation } from '../federation/index.js'
import type { CheckResult } from '../identity/index.js'
import type { Projection } from '../state/index.js'

/** What the node's projections are built from. */
export interface NodeProjectionContext {
  /** This node's DID. */
  did: string
  /** The federation, when the node runs with a genesis. */
  federation?: Federation
  /** Told what each ledger block folded (the node turns it into metrics and `/v1/events`). */
  onLedgerFolded?: LedgerFoldListener
  onLedgerBlockRejected?(code: string): void
  /** Member records this process already verified, which the ledger's fold need not verify again (the node's). */
  verifiedRecords?: VerifiedRecords
  /** Told, per folded ledger block, how its member signatures were checked. */
  onLedgerSignatureChecks?(counts: Record<CheckResult, number>): void
}

/**
 * Every projection the node folds, in registration order. The node (`IcnNode`) and `icn dag reindex` build the
 * same list, so a reindex rebuilds exactly what the running node keeps. Without a federation there is no
 * ledger (its accounts come from the genesis).
 */
export function nodeProjections(ctx: NodeProjectionContext): Projection[] {
  if (!ctx.federation) return []
  return [
    ledgerProjection(ledgerSetup(ctx.federation), {
      onFolded: ctx.onLedgerFolded,
      onRejectedBlock: ctx.onLedgerBlockRejected,
      verified: ctx.verifiedRecords,
      onSignatureChecks: ctx.onLedgerSignatureChecks,
    }),
  ]
}
