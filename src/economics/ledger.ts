import type { ChainWriter } from '../dag/chain-writer.js'
import type { SqlAccess } from '../dag/sql-access.js'
import { type CheckResult, type CoalescingVerifier, IcnError } from '../identity/index.js'
import type { Logger } from '../observability/index.js'
import {
  HomeUnreachableError,
  InvalidInstantError,
  NotAMemberError,
  RecordSignatureError,
  UnknownAccountError,
  WrongFederationError,
  WrongHomeError,
} from './errors.js'
import type { LedgerMetrics } from './metrics.js'
import { checkOp, LEDGER_BATCH_TYPE, type LedgerSetup, loadView, MAX_BATCH_OPS } from './projection.js'
import {
  checkRecordSignature,
  type HoldFields,
  recordFromJson,
  recordSignatureCheck,
  type SignedRecord,
  type TransferFields,
  type VerifiedRecords,
} from './records.js'
import { type AccountKind, type AccountState, accountAt, applyOp, holdId, type LedgerOp } from './rules.js'
import {
  accountsAsOf,
  accountsWithEntriesAfter,
  allAccounts,
  chainState,
  hasEntriesAfter,
  loadAccounts,
  opsOf,
} from './tables.js'

/** An account as the API and the CLI show it, as of `at`. */
export interface AccountView {
  did: string
  kind: AccountKind
  home: string
  /** What it can spend: regenerated mana plus credit. */
  balance: number
  /** The regenerating part of the balance (the manabar) at `at`. */
  mana: number
  /** The non-regenerating part: received credit and holds given back. */
  credit: number
  held: number
  allocated: number
  regenerated: number
  received: number
  sent: number
  burned: number
  /** The instant the figures are for (ISO 8601). */
  at: string
}

/** Where an accepted operation went. */
export interface OpReceipt {
  /** The ledger block that holds it. */
  cid: string
  chain: string
  seq: number
  /** Its index among the block's operations. */
  index: number
  /** The block's time (ISO 8601). */
  ts: string
}

export interface TransferReceipt extends OpReceipt {
  from: AccountView
  to: AccountView
}

export interface LedgerComponents {
  setup: LedgerSetup
  /** This node's DID. */
  did: string
  /** The writer of this node's chain `<did>/ledger`. */
  writer: ChainWriter
  /** Waits until the projections folded a chain position (the projection runner). */
  state: { waitFor(chain: string, seq: number, options?: { signal?: AbortSignal }): Promise<void> }
  sql: SqlAccess
  /**
   * Checks the member signatures of the records the node takes (the node's: batched onto its verifier's worker
   * threads). Default: verified on this thread.
   */
  verifier?: CoalescingVerifier
  /** Where the records whose signature verified are remembered, for the fold of the block that holds them. */
  verified?: VerifiedRecords
  metrics?: LedgerMetrics
  logger?: Logger
  clock?: { now(): number }
  /**
   * Send a member record to its home node (the node-to-node RPC) and return the home node's answer; absent when
   * the node has no network. Errors must keep the home node's code.
   */
  forward?(home: string, record: Record<string, unknown>): Promise<unknown>
}

/** What a written op is answered with: its receipt, its block's time, and the batch's accounts as of then. */
interface Done {
  receipt: OpReceipt
  /** The block's time (ms). */
  at: number
  views?: Map<string, AccountView>
}

interface Pending {
  op: LedgerOp
  at: number
  resolve(done: Done): void
  reject(err: unknown): void
}

/**
 * The ledger on one node: it writes the accounts homed here (one writer per account: the home node) and reads
 * every account from the folded tables. Operations queue and go out in group commits: one ledger block per
 * batch, checked against the folded state plus the batch's earlier operations, written, then folded before
 * anyone is answered, so an answer always matches what every node will fold.
 */
export class Ledger {
  readonly chain: string
  private readonly queue: Pending[] = []
  private running = false
  private scheduled = false

  constructor(private readonly c: LedgerComponents) {
    this.chain = c.writer.chain
  }

  /** The node's time (its injected clock): what "now" means for every read without an instant. */
  now(): number {
    return this.c.clock?.now() ?? Date.now()
  }

  /** Queue one operation for this node's ledger chain; resolves once its block is written and folded. */
  submit(op: LedgerOp): Promise<OpReceipt> {
    return this.enqueue(op).then((done) => done.receipt)
  }

  /** Queue an op; with its receipt come the batch's transfer accounts as of the block (those read by key). */
  private enqueue(op: LedgerOp): Promise<Done> {
    return new Promise((resolve, reject) => {
      this.queue.push({ op, at: performance.now(), resolve, reject })
      this.schedule()
    })
  }

  /**
   * Start the writer after the current turn of the event loop, not now: on SQLite a whole batch (check, write,
   * fold) can run in microtasks, so a writer started at once would answer each request before the next one is
   * even read, one block per op. Started from `setImmediate`, it takes every request read in the same poll.
   */
  private schedule(): void {
    if (this.running || this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      void this.pump()
    })
  }

  /**
   * A member-signed transfer in JSON form, from the API: checked (shape, signature, federation, membership),
   * then written here if the member is homed here, else forwarded to its home node.
   */
  async transferJson(json: unknown, log?: Logger): Promise<TransferReceipt | Record<string, unknown>> {
    const record = recordFromJson(json)
    if (record.kind !== 'transfer') throw new IcnError('MALFORMED_RECORD', 'expected a transfer record')
    const home = this.homeOf(record)
    if (home !== this.c.did) return this.forwardTo(home, json as Record<string, unknown>, log)
    return this.transfer(record as SignedRecord<TransferFields>)
  }

  /** A transfer signed by a member homed here. */
  async transfer(record: SignedRecord<TransferFields>): Promise<TransferReceipt> {
    let outcome = 'applied'
    try {
      await this.checkSignature(record)
      this.checkHomedHere(record)
      const { receipt, views, at } = await this.enqueue({ op: 'transfer', record })
      const from = views?.get(record.member) ?? (await this.account(record.member, at))
      const to = views?.get(record.to) ?? (await this.account(record.to, at))
      return { ...receipt, from: from!, to: to! }
    } catch (err) {
      outcome = (err as { code?: string }).code ?? 'error'
      throw err
    } finally {
      this.c.metrics?.transfers.inc({ outcome })
    }
  }

  /** Reserve mana of a member homed here, authorised by its signed hold record; the hold's id is returned. */
  async hold(record: SignedRecord<HoldFields>): Promise<OpReceipt & { hold: string }> {
    await this.checkSignature(record)
    this.checkHomedHere(record)
    const receipt = await this.submit({ op: 'hold', record })
    return { ...receipt, hold: holdId(record.member, record.nonce) }
  }

  /** Give an open hold back to its account. */
  release(hold: string): Promise<OpReceipt> {
    return this.submit({ op: 'release', hold })
  }

  /** Pay `amount` of an open hold to `to` (less the settlement fee, paid to the treasury) and release the rest. */
  settle(hold: string, to: string, amount: number): Promise<OpReceipt> {
    return this.submit({ op: 'settle', hold, to, amount })
  }

  /** One account as of `at` (ms; default now); undefined if the federation has no such account. */
  async account(did: string, at?: number): Promise<AccountView | undefined> {
    if (at === undefined) {
      const a = (await loadAccounts(this.c.sql, [did])).get(did)
      return a ? this.view(a, this.now()) : undefined
    }
    // Nothing folded for it after `at` (the usual case: a receipt's own block time): its row is its state then,
    // read by key, rather than the sums over its whole history.
    if (!(await hasEntriesAfter(this.c.sql, did, at))) {
      const a = (await loadAccounts(this.c.sql, [did])).get(did)
      return a ? this.view(a, at) : undefined
    }
    const [a] = await accountsAsOf(this.c.sql, at, did)
    if (a) return this.view(a, at)
    // Before its first entry (before the genesis): the account exists, with nothing yet.
    const known = (await loadAccounts(this.c.sql, [did])).get(did)
    return known ? this.view(emptyAt(known, at), at) : undefined
  }

  /** Every account the federation has, as of `at` (default now), sorted by id. */
  async accounts(at?: number): Promise<AccountView[]> {
    if (at === undefined) {
      const now = this.now()
      return (await allAccounts(this.c.sql)).map((a) => this.view(a, now))
    }
    const asOf = new Map((await accountsAsOf(this.c.sql, at)).map((a) => [a.did, a]))
    return (await allAccounts(this.c.sql)).map((a) => this.view(asOf.get(a.did) ?? emptyAt(a, at), at))
  }

  /** The federation's members and their homes. */
  members(): { did: string; home: string }[] {
    return [...this.c.setup.homes]
      .map(([did, home]) => ({ did, home }))
      .sort((a, b) => (a.did < b.did ? -1 : 1))
  }

  member(did: string): { did: string; home: string } | undefined {
    const home = this.c.setup.homes.get(did)
    return home ? { did, home } : undefined
  }

  /** Handle a record forwarded by another node (the RPC handler): it must be for a member homed here. */
  async handleForwarded(message: unknown): Promise<unknown> {
    const record = recordFromJson(message)
    if (record.kind !== 'transfer') throw new IcnError('MALFORMED_RECORD', 'expected a transfer record')
    const home = this.homeOf(record)
    if (home !== this.c.did)
      throw new WrongHomeError(`${record.member} is homed at ${home}, not here`, { details: { home } })
    return this.transfer(record as SignedRecord<TransferFields>)
  }

  /** The record's member signature (its shape was checked); RecordSignatureError if it does not verify. */
  private async checkSignature(record: SignedRecord): Promise<void> {
    const v = this.c.verifier
    const result: CheckResult = v ? await v.check(recordSignatureCheck(record)) : checkRecordSignature(record)
    this.c.metrics?.signatureChecks.inc({ where: 'api', result })
    if (result === 'verified') this.c.verified?.add(record)
    if (result === 'invalid')
      throw new RecordSignatureError(
        `the ${record.kind} record's signature does not verify for ${record.member}`,
        { details: { member: record.member, nonce: record.nonce } },
      )
  }

  private homeOf(record: SignedRecord): string {
    if (record.federation !== this.c.setup.federation)
      throw new WrongFederationError(
        `the record is for federation ${record.federation}, not ${this.c.setup.federation}`,
      )
    const home = this.c.setup.homes.get(record.member)
    if (!home) throw new NotAMemberError(`${record.member} is not a member of this federation`)
    return home
  }

  private checkHomedHere(record: SignedRecord): void {
    const home = this.homeOf(record)
    if (home !== this.c.did)
      throw new WrongHomeError(
        `${record.member} is homed at ${home}; send the record there (or to any node, which forwards it)`,
        {
          details: { member: record.member, home },
        },
      )
    if (record.kind === 'transfer' && !this.knownAccount((record as SignedRecord<TransferFields>).to))
      throw new UnknownAccountError(
        `${(record as SignedRecord<TransferFields>).to} is no account of this federation`,
      )
  }

  private knownAccount(did: string): boolean {
    return did === 'treasury' || this.c.setup.homes.has(did) || this.c.setup.nodes.includes(did)
  }

  private async forwardTo(
    home: string,
    record: Record<string, unknown>,
    log?: Logger,
  ): Promise<Record<string, unknown>> {
    if (!this.c.forward)
      throw new HomeUnreachableError(
        `${String(record.member)} is homed at ${home} and this node has no network to forward it`,
        {
          details: { home },
        },
      )
    try {
      const answer = (await this.c.forward(home, record)) as Record<string, unknown>
      this.c.metrics?.forwarded.inc({ outcome: 'applied' })
      return answer
    } catch (err) {
      const code = (err as { code?: string }).code
      this.c.metrics?.forwarded.inc({ outcome: code ?? 'error' })
      ;(log ?? this.c.logger)?.info(
        { home, member: record.member, code },
        'forwarded record refused or failed',
      )
      if (code === 'PEER_UNREACHABLE' || code === 'RPC_TIMEOUT' || code === undefined)
        throw new HomeUnreachableError(
          `cannot reach ${home}, the member's home node: ${(err as Error).message}`,
          {
            cause: err,
            details: { home },
          },
        )
      throw err
    }
  }

  private view(a: AccountState, at: number, iso = new Date(at).toISOString()): AccountView {
    const v = accountAt(this.c.setup.params, a, at)
    return {
      did: v.did,
      kind: v.kind,
      home: v.home,
      balance: v.mana + v.pool,
      mana: v.mana,
      credit: v.pool,
      held: v.held,
      allocated: v.allocated,
      regenerated: v.regenerated,
      received: v.received,
      sent: v.sent,
      burned: v.burned,
      at: iso,
    }
  }

  /**
   * The receipts' accounts as of the block's time `at`, read by key in two queries for the whole batch; an
   * account with something folded after `at` (another chain's later credit) is left out, for `account(did, at)`.
   */
  private async viewsAt(dids: string[], at: number): Promise<Map<string, AccountView>> {
    if (dids.length === 0) return new Map()
    const later = await accountsWithEntriesAfter(this.c.sql, dids, at)
    const rows = await loadAccounts(
      this.c.sql,
      dids.filter((d) => !later.has(d)),
    )
    const iso = new Date(at).toISOString()
    return new Map([...rows].map(([did, a]) => [did, this.view(a, at, iso)]))
  }

  private async pump(): Promise<void> {
    if (this.running) return
    this.running = true
    try {
      while (this.queue.length > 0) await this.writeBatch(this.queue.splice(0, MAX_BATCH_OPS))
    } finally {
      this.running = false
    }
  }

  /** Check a batch against the folded state, write the accepted ops as one block, wait for its fold, answer. */
  private async writeBatch(batch: Pending[]): Promise<void> {
    let accepted: Pending[] = []
    try {
      const last = await chainState(this.c.sql, this.chain)
      // Time never goes back along the chain, even if this node's clock does.
      const ts = Math.max(this.now(), last?.ts ?? 0, this.c.setup.genesisTs)
      const view = await loadView(
        this.c.sql,
        this.c.setup,
        this.chain,
        ts,
        batch.map((p) => p.op),
      )
      for (const p of batch) {
        try {
          checkOp(p.op)
          applyOp(view, p.op, { checkSignatures: false, checkFunds: true })
          accepted.push(p)
        } catch (err) {
          this.c.metrics?.ops.inc({ op: p.op.op, outcome: (err as { code?: string }).code ?? 'error' })
          p.reject(err)
        }
      }
      if (accepted.length === 0) return
      const written = await this.c.writer.append(LEDGER_BATCH_TYPE, { ops: accepted.map((p) => p.op) }, [], {
        ts,
      })
      this.c.metrics?.batchOps.observe(accepted.length)
      await this.c.state.waitFor(this.chain, written.seq)
      const outcomes = await opsOf(this.c.sql, this.chain, written.seq)
      const views = await this.viewsAt(
        accepted.flatMap((p) => (p.op.op === 'transfer' ? [p.op.record.member, p.op.record.to] : [])),
        ts,
      )
      const iso = new Date(ts).toISOString()
      const cid = written.cid.toString()
      const now = performance.now()
      const applied = new Map<string, number>()
      for (const [index, p] of accepted.entries()) {
        const o = outcomes[index]
        this.c.metrics?.opSeconds.observe({ op: p.op.op }, (now - p.at) / 1000)
        if (o && o.outcome === 'applied') {
          applied.set(p.op.op, (applied.get(p.op.op) ?? 0) + 1)
          p.resolve({ receipt: { cid, chain: this.chain, seq: written.seq, index, ts: iso }, at: ts, views })
        } else {
          // Cannot happen: the fold runs the rules just run. Say so loudly rather than pretend.
          this.c.logger?.error(
            { chain: this.chain, seq: written.seq, index, outcome: o },
            'ledger fold disagreed with its writer',
          )
          p.reject(new IcnError(o?.code ?? 'INTERNAL', o?.reason ?? 'the operation was not folded'))
        }
      }
      for (const [op, n] of applied) this.c.metrics?.ops.inc({ op, outcome: 'applied' }, n)
      accepted = []
    } catch (err) {
      for (const p of accepted) p.reject(err)
    }
  }
}

function emptyAt(a: AccountState, at: number): AccountState {
  return {
    ...a,
    mana: 0,
    manaTs: at,
    pool: 0,
    held: 0,
    allocated: 0,
    regenerated: 0,
    received: 0,
    sent: 0,
    burned: 0,
  }
}

/** Parse an `at` given as ISO 8601 text (or ms since the epoch) into ms; InvalidInstantError otherwise. */
export function parseInstant(text: string): number {
  const ms = /^[0-9]{1,15}$/.test(text) ? Number(text) : Date.parse(text)
  if (!Number.isFinite(ms) || !/^[0-9]{1,15}$|^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(text))
    throw new InvalidInstantError(
      `not an ISO-8601 instant: ${JSON.stringify(text.slice(0, 40))} (e.g. 2026-12-01T12:00:00Z)`,
    )
  return ms
}
