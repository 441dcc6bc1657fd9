import { Counter, Histogram, type Registry } from 'prom-client'

/** The ledger's metrics, registered on the node's registry (once per registry). */
export interface LedgerMetrics {
  /** Member transfers this node took as home node, by outcome (`applied` or the refusing error code). */
  transfers: Counter<'outcome'>
  /** Every ledger operation this node wrote or refused as home node, by op and outcome. */
  ops: Counter<'op' | 'outcome'>
  /** Operations per ledger block written (group commit). */
  batchOps: Histogram<never>
  /** Time from a submitted operation to its block folded here. */
  opSeconds: Histogram<'op'>
  /** Operations folded from every node's ledger chain, by op and outcome. */
  folded: Counter<'op' | 'outcome'>
  /** Ledger blocks folded as rejected as a whole, by code. */
  blocksRejected: Counter<'code'>
  /** Records forwarded to their member's home node, by outcome. */
  forwarded: Counter<'outcome'>
  /**
   * Member signatures checked, by where (`api`: a record the node took; `fold`: a record in a folded block) and
   * result (`verified`, `cached`: found in the process's cache of signatures it verified, `invalid`).
   */
  signatureChecks: Counter<'where' | 'result'>
}

const byRegistry = new WeakMap<Registry, LedgerMetrics>()

export function ledgerMetrics(registry: Registry): LedgerMetrics {
  const known = byRegistry.get(registry)
  if (known) return known
  const registers = [registry]
  const m: LedgerMetrics = {
    transfers: new Counter({
      name: 'icn_ledger_transfers_total',
      help: 'Member transfers taken by this node as home node, by outcome (applied, or the error code)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    ops: new Counter({
      name: 'icn_ledger_ops_total',
      help: 'Ledger operations (transfer, hold, release, settle) this node wrote or refused as home node',
      labelNames: ['op', 'outcome'] as const,
      registers,
    }),
    batchOps: new Histogram({
      name: 'icn_ledger_batch_ops',
      help: 'Operations per ledger block written by this node (group commit)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    }),
    opSeconds: new Histogram({
      name: 'icn_ledger_op_seconds',
      help: 'Time from an operation submitted to its ledger block written and folded on this node',
      labelNames: ['op'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    folded: new Counter({
      name: 'icn_ledger_folded_ops_total',
      help: "Ledger operations folded from every node's ledger chain, by op and outcome",
      labelNames: ['op', 'outcome'] as const,
      registers,
    }),
    blocksRejected: new Counter({
      name: 'icn_ledger_blocks_rejected_total',
      help: 'Ledger blocks folded as rejected as a whole (e.g. time going backwards), by code',
      labelNames: ['code'] as const,
      registers,
    }),
    forwarded: new Counter({
      name: 'icn_ledger_forwarded_total',
      help: "Member records this node forwarded to the member's home node, by outcome",
      labelNames: ['outcome'] as const,
      registers,
    }),
    signatureChecks: new Counter({
      name: 'icn_ledger_signature_checks_total',
      help: 'Member record signatures checked, by where (api, fold) and result (verified, cached, invalid)',
      labelNames: ['where', 'result'] as const,
      registers,
    }),
  }
  byRegistry.set(registry, m)
  return m
}
