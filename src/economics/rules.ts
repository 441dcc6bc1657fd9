import {
  HoldNotFoundError,
  InsufficientManaError,
  InvalidAmountError,
  NotAMemberError,
  RecordExpiredError,
  RecordReplayedError,
  RecordSignatureError,
  RecordTtlError,
  SelfTransferError,
  UnknownAccountError,
  WrongFederationError,
  WrongHomeError,
} from './errors.js'
import { type HoldFields, type SignedRecord, signatureValid, type TransferFields } from './records.js'

/**
 * The ledger's rules as pure functions over account snapshots: the fold (every node, for every ledger block)
 * and the home node's writer (before it writes a block) run the same code, so what a node writes is exactly
 * what every node folds. Integers only; every amount and total is a safe integer.
 *
 * An account's balance has two parts:
 * - `mana`, the manabar: regenerates linearly to the cap (members only; nodes and the treasury have cap 0),
 *   `mana(t) = min(cap, mana + floor(cap·(t − manaTs) / regenMs))` when below the cap, unchanged at or above.
 *   Only the account's home chain changes it, at that chain's block times, so it never depends on other chains.
 * - `pool`, credit: everything received, and holds given back. It does not regenerate. Credits from any chain
 *   only add to it, so they commute: the order in which chains arrive cannot change a balance.
 * A debit takes from the manabar first and the pool for the rest.
 */

export type AccountKind = 'member' | 'node' | 'treasury'

/** The id of the federation's treasury account. */
export const TREASURY = 'treasury'

export interface LedgerParams {
  manaCap: number
  manaRegenSeconds: number
  settlementFeeBps: number
  ledgerSkewMs: number
  recordMaxTtlMs: number
}

export interface AccountState {
  did: string
  kind: AccountKind
  /** DID of the node whose ledger chain writes this account. */
  home: string
  mana: number
  manaTs: number
  pool: number
  held: number
  allocated: number
  regenerated: number
  received: number
  sent: number
  burned: number
}

export type HoldStatus = 'open' | 'released' | 'settled'

export interface HoldState {
  id: string
  account: string
  /** The ledger chain that holds it (its account's home chain). */
  chain: string
  amount: number
  purpose: string
  status: HoldStatus
  /** Paid out by its settlement (0 until settled). */
  paid: number
  /** Where the settlement paid to. */
  payee: string | null
}

/** One operation of a ledger block, in block form. */
export type LedgerOp =
  | { op: 'transfer'; record: SignedRecord<TransferFields> }
  | { op: 'hold'; record: SignedRecord<HoldFields> }
  | { op: 'release'; hold: string }
  | { op: 'settle'; hold: string; to: string; amount: number }

/** What one operation changed on one account: deltas of every total, and the manabar after it if it moved. */
export interface Entry {
  account: string
  allocated: number
  regenerated: number
  received: number
  sent: number
  burned: number
  pool: number
  held: number
  /** Set when the op changed the manabar (a debit on the home chain): its value and time after. */
  mana?: number
  manaTs?: number
}

/** A hold's id: its member and the nonce of the record that made it. */
export function holdId(member: string, nonce: string): string {
  return `${member}/${nonce}`
}

/** The manabar's cap for an account kind. */
export function capOf(params: LedgerParams, kind: AccountKind): number {
  return kind === 'member' ? params.manaCap : 0
}

/** The manabar's value at `t` (ms), from its last recorded value and time. */
export function manaAt(
  params: LedgerParams,
  a: Pick<AccountState, 'kind' | 'mana' | 'manaTs'>,
  t: number,
): number {
  const cap = capOf(params, a.kind)
  if (a.mana >= cap) return a.mana
  const dt = Math.max(0, t - a.manaTs)
  const inc = (BigInt(cap) * BigInt(dt)) / (BigInt(params.manaRegenSeconds) * 1000n)
  const next = BigInt(a.mana) + inc
  return Number(next < BigInt(cap) ? next : BigInt(cap))
}

/** What an account can spend at `t`: regenerated mana plus credit. */
export function available(params: LedgerParams, a: AccountState, t: number): number {
  return manaAt(params, a, t) + a.pool
}

/** An account as of `t`: the manabar regenerated to `t` (read-side only; nothing is written). */
export function accountAt(params: LedgerParams, a: AccountState, t: number): AccountState {
  const mana = manaAt(params, a, t)
  return { ...a, mana, manaTs: Math.max(a.manaTs, t), regenerated: a.regenerated + (mana - a.mana) }
}

/** The snapshot an operation reads and writes: loaded from SQL by the fold, or by the writer. */
export interface LedgerView {
  federation: string
  params: LedgerParams
  /** The ledger chain being written (`<node DID>/ledger`) and its writer. */
  chain: string
  node: string
  /** The block's time. */
  ts: number
  accounts: Map<string, AccountState>
  holds: Map<string, HoldState>
  /** `member nonce` pairs already used. */
  nonces: Set<string>
}

export interface ApplyOptions {
  /** Check the record signatures: the fold always does (on every node, the block's author too); the writer already did. */
  checkSignatures: boolean
  /**
   * How a record's signature is checked (default `signatureValid`). The fold passes one that first asks this
   * process's cache of signatures it already verified (the same answer, cheaper), and counts the checks.
   */
  signatureValid?: (record: SignedRecord) => boolean
  /**
   * Refuse debits beyond what the payer can spend (the writer). The fold does not: a home node's debit may rely
   * on credits this node has not received yet, and refusing it here would make state depend on arrival order.
   */
  checkFunds: boolean
}

/** The changes of one applied op. */
export interface Applied {
  entries: Entry[]
  /** Nonce used (member, nonce) */
  nonce?: { member: string; nonce: string; expires: number }
  hold?: HoldState
}

const nonceKey = (member: string, nonce: string) => `${member} ${nonce}`

/**
 * Apply one op to the view (mutating it) and return its changes, or throw the typed error that refuses it (the
 * view is then unchanged). The rules, in order, are those of docs/protocol.md "Ledger".
 */
export function applyOp(view: LedgerView, op: LedgerOp, options: ApplyOptions): Applied {
  switch (op.op) {
    case 'transfer': {
      const { record } = op
      const payer = checkMemberRecord(view, record, options)
      const payee = view.accounts.get(record.to)
      if (!payee) throw new UnknownAccountError(`${record.to} is no account of this federation`)
      if (payee.did === payer.did) throw new SelfTransferError('a transfer must name another account')
      if (options.checkFunds) checkFunds(view, payer, record.amount)
      const entries = [debit(view, payer, record.amount, 'sent'), credit(payee, record.amount)]
      return { entries: merge(entries), nonce: useNonce(view, record) }
    }
    case 'hold': {
      const { record } = op
      const payer = checkMemberRecord(view, record, options)
      const id = holdId(record.member, record.nonce)
      if (options.checkFunds) checkFunds(view, payer, record.amount)
      const entry = debit(view, payer, record.amount, 'held')
      const hold: HoldState = {
        id,
        account: payer.did,
        chain: view.chain,
        amount: record.amount,
        purpose: record.purpose,
        status: 'open',
        paid: 0,
        payee: null,
      }
      view.holds.set(id, hold)
      return { entries: [entry], nonce: useNonce(view, record), hold }
    }
    case 'release': {
      const hold = openHold(view, op.hold)
      const account = view.accounts.get(hold.account)!
      account.held -= hold.amount
      account.pool += hold.amount
      const released = { ...hold, status: 'released' as const }
      view.holds.set(hold.id, released)
      return { entries: [{ ...zero(account.did), held: -hold.amount, pool: hold.amount }], hold: released }
    }
    case 'settle': {
      const hold = openHold(view, op.hold)
      if (!Number.isSafeInteger(op.amount) || op.amount < 0 || op.amount > hold.amount)
        throw new InvalidAmountError(
          `a settlement pays from 0 to the hold's ${hold.amount}, not ${op.amount}`,
        )
      const payer = view.accounts.get(hold.account)!
      const payee = view.accounts.get(op.to)
      if (!payee) throw new UnknownAccountError(`${op.to} is no account of this federation`)
      if (payee.did === payer.did) throw new SelfTransferError('a settlement must pay another account')
      const treasury = view.accounts.get(TREASURY)!
      const fee = payee.did === TREASURY ? 0 : Math.floor((op.amount * view.params.settlementFeeBps) / 10_000)
      const rest = hold.amount - op.amount
      payer.held -= hold.amount
      payer.sent += op.amount
      payer.pool += rest
      const entries: Entry[] = [
        { ...zero(payer.did), held: -hold.amount, sent: op.amount, pool: rest },
        credit(payee, op.amount - fee),
      ]
      if (fee > 0) entries.push(credit(treasury, fee))
      const settled: HoldState = { ...hold, status: 'settled', paid: op.amount, payee: payee.did }
      view.holds.set(hold.id, settled)
      return { entries: merge(entries), hold: settled }
    }
  }
}

function checkMemberRecord(
  view: LedgerView,
  record: SignedRecord<TransferFields> | SignedRecord<HoldFields>,
  options: ApplyOptions,
): AccountState {
  if (record.federation !== view.federation)
    throw new WrongFederationError(
      `the record is for federation ${record.federation}, not ${view.federation}`,
    )
  const payer = view.accounts.get(record.member)
  if (payer?.kind !== 'member')
    throw new NotAMemberError(`${record.member} is not a member of this federation`)
  if (payer.home !== view.node)
    throw new WrongHomeError(`${record.member} is homed at ${payer.home}, not at ${view.node}`, {
      details: { member: record.member, home: payer.home },
    })
  if (record.expires < view.ts)
    throw new RecordExpiredError(`the record expired at ${new Date(record.expires).toISOString()}`, {
      details: { expires: record.expires, at: view.ts },
    })
  if (record.expires > view.ts + view.params.recordMaxTtlMs)
    throw new RecordTtlError(
      `the record expires more than recordMaxTtlMs (${view.params.recordMaxTtlMs} ms) ahead`,
      { details: { expires: record.expires, at: view.ts } },
    )
  if (view.nonces.has(nonceKey(record.member, record.nonce)))
    throw new RecordReplayedError(`nonce ${record.nonce} of ${record.member} was already used`, {
      details: { member: record.member, nonce: record.nonce },
    })
  if (options.checkSignatures && !(options.signatureValid ?? signatureValid)(record))
    throw new RecordSignatureError(
      `the ${record.kind} record's signature does not verify for ${record.member}`,
    )
  return payer
}

function checkFunds(view: LedgerView, payer: AccountState, amount: number): void {
  const can = available(view.params, payer, view.ts)
  if (can < amount)
    throw new InsufficientManaError(`${payer.did} has ${can} and cannot pay ${amount}`, {
      details: { account: payer.did, balance: can, amount },
    })
}

function useNonce(
  view: LedgerView,
  record: SignedRecord,
): { member: string; nonce: string; expires: number } {
  view.nonces.add(nonceKey(record.member, record.nonce))
  return { member: record.member, nonce: record.nonce, expires: record.expires }
}

function openHold(view: LedgerView, id: string): HoldState {
  const hold = view.holds.get(id)
  if (hold?.status !== 'open' || hold.chain !== view.chain)
    throw new HoldNotFoundError(`no open hold ${id} on ${view.chain}`, { details: { hold: id } })
  return hold
}

function zero(account: string): Entry {
  return { account, allocated: 0, regenerated: 0, received: 0, sent: 0, burned: 0, pool: 0, held: 0 }
}

/** Take `amount` from the account at the block's time (manabar first), into `sent` or `held`. */
function debit(view: LedgerView, a: AccountState, amount: number, into: 'sent' | 'held'): Entry {
  const mana = manaAt(view.params, a, view.ts)
  const regenerated = mana - a.mana
  const fromMana = Math.min(amount, mana)
  const fromPool = amount - fromMana
  a.regenerated += regenerated
  a.mana = mana - fromMana
  a.manaTs = view.ts
  a.pool -= fromPool
  a[into] += amount
  return { ...zero(a.did), regenerated, pool: -fromPool, [into]: amount, mana: a.mana, manaTs: a.manaTs }
}

function credit(a: AccountState, amount: number): Entry {
  a.pool += amount
  a.received += amount
  return { ...zero(a.did), received: amount, pool: amount }
}

/** One entry per account (a settlement may credit the treasury twice, as payee and fee). */
function merge(entries: Entry[]): Entry[] {
  const out = new Map<string, Entry>()
  for (const e of entries) {
    const m = out.get(e.account)
    if (!m) {
      out.set(e.account, { ...e })
      continue
    }
    for (const k of ['allocated', 'regenerated', 'received', 'sent', 'burned', 'pool', 'held'] as const)
      m[k] += e[k]
    if (e.mana !== undefined) {
      m.mana = e.mana
      m.manaTs = e.manaTs
    }
  }
  return [...out.values()]
}
