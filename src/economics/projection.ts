import { Type } from 'typebox'
import { Compile } from 'typebox/compile'
import { chainWriter, decodeSignedBlock } from '../dag/block.js'
import type { SqlQueries } from '../dag/sql-access.js'
import type { Federation } from '../federation/index.js'
import { type CheckResult, IcnError } from '../identity/index.js'
import type { FoldContext, FoldOutcome, Projection } from '../state/projection.js'
import { MalformedRecordError } from './errors.js'
import {
  checkRecordSignature,
  plainText,
  SignedHold,
  type SignedRecord,
  SignedTransfer,
  type VerifiedRecords,
} from './records.js'
import {
  type AccountState,
  applyOp,
  holdId,
  type LedgerOp,
  type LedgerParams,
  type LedgerView,
  TREASURY,
} from './rules.js'
import { chainState, ECONOMICS_MODULE, loadAccounts, loadHolds, loadNonces, nonceKey } from './tables.js'
import { type FoldedRows, insertAccount, insertEntry, saveFolded } from './writes.js'

/** Record type of a ledger block: a batch of operations, written by a node on its chain `<node DID>/ledger`. */
export const LEDGER_BATCH_TYPE = 'icn.ledger.batch/v1'
/** Chain name of a node's ledger. */
export const LEDGER_CHAIN = 'ledger'
/** Most operations in one ledger block. */
export const MAX_BATCH_OPS = 512

const HoldRef = plainText(256)
const Op = Type.Union([
  Type.Object({ op: Type.Literal('transfer'), record: SignedTransfer }, { additionalProperties: false }),
  Type.Object({ op: Type.Literal('hold'), record: SignedHold }, { additionalProperties: false }),
  Type.Object({ op: Type.Literal('release'), hold: HoldRef }, { additionalProperties: false }),
  Type.Object(
    {
      op: Type.Literal('settle'),
      hold: HoldRef,
      to: plainText(128),
      amount: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
    },
    { additionalProperties: false },
  ),
])
// Compiled on first use, as the records' checks are.
let opCheck: ReturnType<typeof Compile> | undefined

/**
 * Check one op against the block rule's schema before the writer puts it in a block: a block with one op that
 * does not fit folds as SCHEMA_MISMATCH on every node, with every other op of its batch. MalformedRecordError.
 */
export function checkOp(op: unknown): void {
  opCheck ??= Compile(Op)
  if (opCheck.Check(op)) return
  const first = opCheck.Errors(op)[0] as { instancePath?: string; message?: string } | undefined
  throw new MalformedRecordError(
    `the operation does not fit the ledger's block rules${first ? `: ${first.instancePath || '/'} ${first.message}` : ''}`,
    { details: first ? { path: first.instancePath, problem: first.message } : {} },
  )
}

export const LedgerBatchBody = Type.Object(
  { ops: Type.Array(Op, { minItems: 1, maxItems: MAX_BATCH_OPS }) },
  { additionalProperties: false },
)

/** The federation's ledger: parameters, genesis time and who is homed where. */
export interface LedgerSetup {
  federation: string
  params: LedgerParams
  memberAllocation: number
  treasuryAllocation: number
  genesisTs: number
  /** member DID → home node DID */
  homes: Map<string, string>
  nodes: string[]
  /** Home node of the treasury: the first node in sorted order. */
  treasuryHome: string
}

export function ledgerSetup(f: Federation): LedgerSetup {
  const p = f.parameters
  const nodes = [...f.nodes].sort()
  const homes = new Map(f.members.map((m) => [m, f.homes[m] ?? nodes[0]!]))
  return {
    federation: f.id,
    params: {
      manaCap: p.manaCap,
      manaRegenSeconds: p.manaRegenSeconds,
      settlementFeeBps: p.settlementFeeBps,
      ledgerSkewMs: p.ledgerSkewMs,
      recordMaxTtlMs: p.recordMaxTtlMs,
    },
    memberAllocation: p.memberAllocation,
    treasuryAllocation: p.treasuryAllocation,
    genesisTs: decodeSignedBlock(f.genesis.bytes).ts,
    homes,
    nodes,
    treasuryHome: nodes[0]!,
  }
}

/** The accounts a federation starts with: its members, its nodes and the treasury. */
export function genesisAccounts(s: LedgerSetup): AccountState[] {
  const base = { held: 0, regenerated: 0, received: 0, sent: 0, burned: 0, manaTs: s.genesisTs }
  const out: AccountState[] = []
  for (const [did, home] of s.homes)
    out.push({
      ...base,
      did,
      kind: 'member',
      home,
      mana: s.memberAllocation,
      pool: 0,
      allocated: s.memberAllocation,
    })
  // A DID that is both a member and a node (older federations listed their nodes as members) has one
  // account: the member's.
  for (const did of s.nodes)
    if (!s.homes.has(did)) out.push({ ...base, did, kind: 'node', home: did, mana: 0, pool: 0, allocated: 0 })
  out.push({
    ...base,
    did: TREASURY,
    kind: 'treasury',
    home: s.treasuryHome,
    mana: 0,
    pool: s.treasuryAllocation,
    allocated: s.treasuryAllocation,
  })
  return out.sort((a, b) => (a.did < b.did ? -1 : a.did > b.did ? 1 : 0))
}

/** The keys an op reads: accounts, holds, nonces. */
function keysOf(ops: LedgerOp[]): { accounts: Set<string>; holds: Set<string>; nonces: Set<string> } {
  const accounts = new Set<string>([TREASURY])
  const holds = new Set<string>()
  const nonces = new Set<string>()
  for (const op of ops) {
    if (op.op === 'transfer') {
      accounts.add(op.record.member).add(op.record.to)
      nonces.add(nonceKey(op.record.member, op.record.nonce))
    } else if (op.op === 'hold') {
      accounts.add(op.record.member)
      nonces.add(nonceKey(op.record.member, op.record.nonce))
      holds.add(holdId(op.record.member, op.record.nonce))
    } else {
      holds.add(op.hold)
      if (op.op === 'settle') accounts.add(op.to)
    }
  }
  return { accounts, holds, nonces }
}

/** Load the snapshot `ops` need (the accounts of the holds they name included). */
export async function loadView(
  q: SqlQueries,
  s: LedgerSetup,
  chain: string,
  ts: number,
  ops: LedgerOp[],
): Promise<LedgerView> {
  const view: LedgerView = {
    federation: s.federation,
    params: s.params,
    chain,
    node: chainWriter(chain),
    ts,
    accounts: new Map(),
    holds: new Map(),
    nonces: new Set(),
  }
  await extendView(q, view, ops)
  return view
}

/**
 * Add to `view` what `ops` need that it does not hold yet: holds and accounts by key, and which of the ops'
 * nonces are used. What the view holds already stays: in a fold of several blocks, the earlier blocks' work,
 * newer than the tables (written at the transaction's end).
 */
export async function extendView(q: SqlQueries, view: LedgerView, ops: LedgerOp[]): Promise<void> {
  const keys = keysOf(ops)
  const holds = await loadHolds(
    q,
    [...keys.holds].filter((id) => !view.holds.has(id)),
  )
  for (const [id, h] of holds) view.holds.set(id, h)
  for (const id of keys.holds) {
    const h = view.holds.get(id)
    if (h) keys.accounts.add(h.account)
  }
  const accounts = await loadAccounts(
    q,
    [...keys.accounts].filter((did) => !view.accounts.has(did)),
  )
  for (const [did, a] of accounts) view.accounts.set(did, a)
  for (const key of await loadNonces(
    q,
    [...keys.nonces].filter((k) => !view.nonces.has(k)),
  ))
    view.nonces.add(key)
}

/**
 * The account an op is about, for its `ledger_ops` row. A release or settlement names a hold: only a hold of
 * this chain counts (one of another chain may or may not be folded yet here, which would make the row depend on
 * arrival order).
 */
function memberOf(op: LedgerOp, view: LedgerView): string | null {
  if (op.op === 'transfer' || op.op === 'hold') return op.record.member
  const hold = view.holds.get(op.hold)
  return hold && hold.chain === view.chain ? hold.account : null
}

export type LedgerFoldListener = (event: {
  chain: string
  seq: number
  cid: string
  ts: number
  ops: { idx: number; op: LedgerOp; code: string | null }[]
}) => void

/** The folds of one transaction: a view and the last folded position per chain, and the rows to write. */
interface TxBatch {
  views: Map<string, LedgerView>
  chains: Map<string, { seq: number; ts: number }>
  rows: FoldedRows
}

function emptyRows(): FoldedRows {
  return { entries: [], nonces: [], holds: [], ops: [] }
}

/**
 * The ledger projection: folds every node's ledger chain. Rules (docs/protocol.md "Ledger"): a block whose time
 * is before the genesis or before the previous block of its chain folds as rejected (`LEDGER_TIME_BACKWARDS`);
 * one dated more than `ledgerSkewMs` ahead of the reader's clock waits (deferred) until it is not; otherwise each
 * op applies or is refused on its own, by the rules in rules.ts, in block order.
 */
export function ledgerProjection(
  s: LedgerSetup,
  hooks: {
    onFolded?: LedgerFoldListener
    onRejectedBlock?(code: string): void
    /**
     * Member records this process already verified (the node's, filled by its API): one found there (the same
     * fields and signature) is not verified again. The result is the same; only the home node's own records are
     * found, and only while the process runs. Without it (`icn dag reindex`), every signature is verified.
     */
    verified?: VerifiedRecords
    /** Told, per folded block, how its member signatures were checked. */
    onSignatureChecks?(counts: Record<CheckResult, number>): void
  } = {},
): Projection {
  const nodes = new Set(s.nodes)
  /** What the folds of each open transaction gathered (dropped with the transaction's handle). */
  const pending = new WeakMap<SqlQueries, TxBatch>()
  return {
    name: 'economics.ledger',
    // 2: record and op strings refuse control characters (such a block folds as SCHEMA_MISMATCH). A node that
    // folded under 1 clears and refolds its ledger once at start, so every node applies the same rule.
    version: 2,
    module: ECONOMICS_MODULE,
    chains: (chain) => chain.endsWith(`/${LEDGER_CHAIN}`) && nodes.has(chainWriter(chain)),
    recordTypes: { [LEDGER_BATCH_TYPE]: LedgerBatchBody },
    async init(tx) {
      for (const a of genesisAccounts(s)) {
        await insertAccount(tx, a)
        await insertEntry(
          tx,
          { chain: 'genesis', seq: -1, idx: 0, ts: s.genesisTs, op: 'genesis' },
          {
            account: a.did,
            allocated: a.allocated,
            regenerated: 0,
            received: 0,
            sent: 0,
            burned: 0,
            pool: a.pool,
            held: 0,
            mana: a.mana,
            manaTs: a.manaTs,
          },
        )
      }
    },
    async fold(ctx: FoldContext): Promise<FoldOutcome> {
      const { tx, block } = ctx
      const ts = block.ts
      // The blocks of one transaction fold onto one view per chain; their rows are written once, at the end.
      let batch = pending.get(tx)
      if (!batch) {
        const b: TxBatch = { views: new Map(), chains: new Map(), rows: emptyRows() }
        pending.set(tx, b)
        ctx.beforeCommit(async () => {
          await saveFolded(tx, b.rows, b.chains)
        })
        batch = b
      }
      const last = batch.chains.get(block.chain) ?? (await chainState(tx, block.chain))
      const floor = Math.max(s.genesisTs, last?.ts ?? s.genesisTs)
      if (ts < floor) {
        const onRejected = hooks.onRejectedBlock
        if (onRejected) ctx.afterCommit(() => onRejected('LEDGER_TIME_BACKWARDS'))
        return {
          status: 'rejected',
          code: 'LEDGER_TIME_BACKWARDS',
          reason: `block time ${ts} is before ${floor} (the genesis or the chain's previous ledger block)`,
        }
      }
      if (ts > ctx.now + s.params.ledgerSkewMs)
        return {
          status: 'deferred',
          untilMs: ts - s.params.ledgerSkewMs,
          reason: `block time ${new Date(ts).toISOString()} is more than ledgerSkewMs ahead of this node's clock`,
        }
      const ops = (block.body as { ops: LedgerOp[] }).ops
      let view = batch.views.get(block.chain)
      if (view) {
        view.ts = ts
        await extendView(tx, view, ops)
      } else {
        view = await loadView(tx, s, block.chain, ts, ops)
        batch.views.set(block.chain, view)
      }
      const folded: { idx: number; op: LedgerOp; code: string | null }[] = []
      // The ops run one by one on the view; what they change is written once for the whole transaction.
      const rows = batch.rows
      const checks: Record<CheckResult, number> = { verified: 0, cached: 0, invalid: 0 }
      const signatureValid = (record: SignedRecord): boolean => {
        const result = checkRecordSignature(record, hooks.verified)
        checks[result]++
        return result !== 'invalid'
      }
      for (const [idx, op] of ops.entries()) {
        const where = { chain: block.chain, seq: block.seq, idx, ts, op: op.op }
        const member = memberOf(op, view)
        try {
          // Signatures are checked on the author's node too: skipping them there (its writer checked) would let a
          // record that bypassed the writer apply on its author and be refused everywhere else.
          const applied = applyOp(view, op, { checkSignatures: true, checkFunds: false, signatureValid })
          for (const entry of applied.entries) rows.entries.push({ where, entry })
          if (applied.nonce) rows.nonces.push(applied.nonce)
          if (applied.hold) rows.holds.push(applied.hold)
          rows.ops.push({ ...where, member, outcome: 'applied', code: null, reason: null })
          folded.push({ idx, op, code: null })
        } catch (err) {
          if (!(err instanceof IcnError)) throw err
          rows.ops.push({ ...where, member, outcome: 'rejected', code: err.code, reason: err.message })
          folded.push({ idx, op, code: err.code })
        }
      }
      batch.chains.set(block.chain, { seq: block.seq, ts })
      const event = { chain: block.chain, seq: block.seq, cid: ctx.cid.toString(), ts, ops: folded }
      const onFolded = hooks.onFolded
      if (onFolded) ctx.afterCommit(() => onFolded(event))
      const onChecks = hooks.onSignatureChecks
      if (onChecks) ctx.afterCommit(() => onChecks(checks))
      return { status: 'applied' }
    },
  }
}
