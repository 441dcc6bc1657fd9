/**
 * Test fixture: the ledger's full stack without a network, for several node identities of one federation in one
 * process. Each `LedgerNode` is a real block store (SQLite file or PostgreSQL database), a real ProjectionRunner
 * with the ledger projection, the node's ChainWriter of `<DID>/ledger` and a `Ledger` over them, built the way
 * src/node/node.ts `buildLedger` does, all on one ManualClock. Identities, members and the genesis come from a
 * seed, so a child process (test/sim/fixtures/ledger-child.ts) builds the same federation as its parent.
 * `syncLedgers` copies the ledger chains between the nodes' stores (what block exchange does on a network).
 */
import { createHash } from 'node:crypto'
import { Writable } from 'node:stream'
import {
  type Block,
  type BlockStore,
  ChainWriter,
  exportCar,
  SqliteBlockStore,
  type SqlRow,
} from '../../src/dag/index.js'
import { PostgresBlockStore } from '../../src/dag/postgres.js'
import {
  type AccountView,
  type HoldFields,
  LEDGER_BATCH_TYPE,
  LEDGER_CHAIN,
  Ledger,
  type LedgerOp,
  type LedgerSetup,
  ledgerProjection,
  ledgerSetup,
  type SignedRecord,
  signRecord,
  type TransferFields,
  type VerifiedRecords,
} from '../../src/economics/index.js'
import { createGenesis, type Federation, type FederationParameters } from '../../src/federation/index.js'
import { type CheckResult, Signer } from '../../src/identity/index.js'
import { type Projection, ProjectionRunner } from '../../src/state/index.js'
import { ManualClock } from './manual-clock.js'

/** The genesis time of every ledger world (a real date; block times follow it). */
export const LEDGER_T0 = Date.UTC(2026, 0, 1)

/** Ledger parameters small enough that regeneration and the cap show within seconds of block time. */
export const LEDGER_PARAMETERS: Partial<FederationParameters> = {
  manaCap: 1_000,
  manaRegenSeconds: 100,
  memberAllocation: 500,
  treasuryAllocation: 1_000,
  settlementFeeBps: 250,
  recordMaxTtlMs: 60_000,
}

export interface LedgerWorld {
  federation: Federation
  setup: LedgerSetup
  /** Node identities, in creation order (not sorted). */
  nodes: Signer[]
  /** Members; member i is homed at node `i % nodes.length`. */
  members: Signer[]
  /** Index of the home node of member i. */
  homeOf(member: number): number
}

function seeded(seed: string, what: string): Signer {
  return Signer.fromSeed(createHash('sha256').update(`${seed}:${what}`).digest())
}

/** A federation of `nodes` node identities and `nodes × membersPerNode` members, all derived from `seed`. */
export function ledgerWorld(opts: {
  seed: string
  nodes: number
  membersPerNode: number
  parameters?: Partial<FederationParameters>
}): LedgerWorld {
  const nodes = Array.from({ length: opts.nodes }, (_, i) => seeded(opts.seed, `node${i}`))
  const members = Array.from({ length: opts.nodes * opts.membersPerNode }, (_, i) =>
    seeded(opts.seed, `member${i}`),
  )
  const homeOf = (i: number): number => i % opts.nodes
  const federation = createGenesis(nodes[0]!, {
    name: 'ledger-test',
    members: members.map((m) => m.did),
    nodes: nodes.map((n) => n.did),
    homes: Object.fromEntries(members.map((m, i) => [m.did, nodes[homeOf(i)]!.did])),
    parameters: { ...LEDGER_PARAMETERS, ...opts.parameters },
    ts: LEDGER_T0,
  })
  return { federation, setup: ledgerSetup(federation), nodes, members, homeOf }
}

export type StoreTarget = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string }

export function openStore(target: StoreTarget, clock?: { now(): number }): BlockStore {
  return target.kind === 'sqlite'
    ? new SqliteBlockStore({ path: target.path }, { clock })
    : new PostgresBlockStore({ url: target.url }, { clock })
}

/**
 * One node's ledger stack. `start()` opens the store and builds runner, writer and ledger afresh (a restart of
 * the process, as far as the ledger is concerned); `stop()` stops the runner and closes the store.
 */
export class LedgerNode {
  store?: BlockStore
  runner?: ProjectionRunner
  writer?: ChainWriter
  ledger?: Ledger

  constructor(
    readonly world: LedgerWorld,
    /** The node identity (index into world.nodes); -1 for a reader that is none of them (`did` undefined). */
    readonly index: number,
    readonly target: StoreTarget,
    readonly clock: ManualClock,
    readonly options: {
      batchBlocks?: number
      projection?: (p: Projection) => Projection
      /** Handed to the ledger projection: records this "process" already verified, and the checks' counts. */
      verified?: VerifiedRecords
      onSignatureChecks?: (counts: Record<CheckResult, number>) => void
    } = {},
  ) {}

  get signer(): Signer {
    const s = this.world.nodes[this.index]
    if (!s) throw new Error(`node ${this.index} has no identity: a reader only`)
    return s
  }

  get did(): string | undefined {
    return this.world.nodes[this.index]?.did
  }

  get chain(): string {
    return `${this.signer.did}/${LEDGER_CHAIN}`
  }

  get running(): boolean {
    return this.runner !== undefined
  }

  async start(): Promise<this> {
    if (this.runner) return this
    const store = openStore(this.target, this.clock)
    await store.open()
    const runner = new ProjectionRunner(
      { batchBlocks: this.options.batchBlocks },
      { store, clock: this.clock, did: this.did },
    )
    const p = ledgerProjection(this.world.setup, {
      verified: this.options.verified,
      onSignatureChecks: this.options.onSignatureChecks,
    })
    runner.register(this.options.projection ? this.options.projection(p) : p)
    try {
      await runner.start()
    } catch (err) {
      await store.close()
      throw err
    }
    this.store = store
    this.runner = runner
    if (this.index >= 0) {
      this.writer = new ChainWriter({ name: LEDGER_CHAIN }, { store, signer: this.signer, clock: this.clock })
      this.ledger = new Ledger({
        setup: this.world.setup,
        did: this.signer.did,
        writer: this.writer,
        state: runner,
        sql: store.sql(),
        clock: this.clock,
      })
    }
    return this
  }

  async stop(): Promise<void> {
    const { runner, store } = this
    this.runner = undefined
    this.store = undefined
    this.writer = undefined
    this.ledger = undefined
    await runner?.stop()
    await store?.close()
  }

  /** Write a ledger block straight to this node's chain (bypassing the Ledger's checks), then wait for its fold. */
  async rawBlock(body: unknown, ts?: number): Promise<{ seq: number; cid: string }> {
    const w = await this.writer!.append(LEDGER_BATCH_TYPE, body, [], { ts })
    await this.runner!.waitFor(this.chain, w.seq)
    return { seq: w.seq, cid: w.cid.toString() }
  }

  /** Wait until every ledger chain this store holds is folded to its head. */
  async caughtUp(): Promise<void> {
    for (const h of await this.store!.chainHeads())
      if (h.chain.endsWith(`/${LEDGER_CHAIN}`)) await this.runner!.waitFor(h.chain, h.seq)
  }

  dump(): Promise<Record<string, SqlRow[]>> {
    return this.runner!.dump()
  }
}

/** Every block of every ledger chain `store` holds, per chain in chain order (chains sorted). */
export async function ledgerChains(store: BlockStore): Promise<Map<string, Block[]>> {
  const out = new Map<string, Block[]>()
  const heads = (await store.chainHeads()).filter((h) => h.chain.endsWith(`/${LEDGER_CHAIN}`))
  for (const h of heads.sort((a, b) => (a.chain < b.chain ? -1 : 1))) {
    const blocks: Block[] = []
    while (blocks.length <= h.seq) {
      const part = await store.chainRange(h.chain, blocks.length, 1_000)
      if (part.length === 0) throw new Error(`chain ${h.chain} has a gap at ${blocks.length}`)
      blocks.push(...part)
    }
    out.set(h.chain, blocks)
  }
  return out
}

/** Copy every ledger block one running node holds and another lacks, both ways between every pair. */
export async function syncLedgers(nodes: LedgerNode[]): Promise<void> {
  const running = nodes.filter((n) => n.running)
  for (const from of running)
    for (const to of running) {
      if (from === to) continue
      for (const [chain, blocks] of await ledgerChains(from.store!)) {
        const head = await to.store!.chainHead(chain)
        const missing = blocks.slice((head?.seq ?? -1) + 1)
        if (missing.length > 0) await to.store!.putMany(missing)
      }
    }
  for (const n of running) await n.caughtUp()
}

/** A CAR of everything `store` holds. */
export async function carOf(store: BlockStore): Promise<Uint8Array> {
  const parts: Buffer[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(Buffer.from(chunk))
      cb()
    },
  })
  await exportCar(store, sink)
  return new Uint8Array(Buffer.concat(parts))
}

/** Signs member records with fresh nonces (`<tag>-<counter>`, 8+ characters) expiring `ttlMs` after `now`. */
export class RecordMaker {
  private n = 0
  constructor(
    readonly world: LedgerWorld,
    readonly clock: { now(): number },
    readonly tag = 'rec',
    readonly ttlMs = 30_000,
  ) {}

  private nonce(): string {
    return `${this.tag}-${String(++this.n).padStart(8, '0')}`
  }

  transfer(member: number, to: string, amount: number, over: Partial<TransferFields> = {}) {
    const m = this.world.members[member]!
    return signRecord(m, {
      kind: 'transfer',
      federation: this.world.setup.federation,
      member: m.did,
      to,
      amount,
      nonce: this.nonce(),
      expires: this.clock.now() + this.ttlMs,
      ...over,
    } as TransferFields) as SignedRecord<TransferFields>
  }

  hold(member: number, amount: number, over: Partial<HoldFields> = {}): SignedRecord<HoldFields> {
    const m = this.world.members[member]!
    return signRecord(m, {
      kind: 'hold',
      federation: this.world.setup.federation,
      member: m.did,
      amount,
      purpose: 'job escrow',
      nonce: this.nonce(),
      expires: this.clock.now() + this.ttlMs,
      ...over,
    } as HoldFields) as SignedRecord<HoldFields>
  }
}

export type { LedgerOp }

/**
 * The books, as the API view shows them: per account balance + held = allocated + regenerated + received − sent −
 * burned; over the federation Σ received = Σ sent. Returns the broken rules (empty when they all hold).
 */
export function brokenBooks(views: AccountView[]): string[] {
  const broken: string[] = []
  let received = 0
  let sent = 0
  for (const v of views) {
    const left = v.balance + v.held
    const right = v.allocated + v.regenerated + v.received - v.sent - v.burned
    if (left !== right) broken.push(`${v.did}: balance ${v.balance} + held ${v.held} = ${left} ≠ ${right}`)
    if (v.balance !== v.mana + v.credit) broken.push(`${v.did}: balance ≠ mana + credit`)
    received += v.received
    sent += v.sent
  }
  if (received !== sent) broken.push(`Σ received ${received} ≠ Σ sent ${sent}`)
  return broken
}

/** A small seeded PRNG (mulberry32): the same seed gives the same shuffles on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

/** One interleaving of the chains: each chain's blocks in chain order, which chain goes next chosen by `random`. */
export function interleave(chains: Map<string, Block[]>, random: () => number): Block[] {
  const queues = [...chains.values()].map((b) => [...b])
  const out: Block[] = []
  for (;;) {
    const open = queues.filter((q) => q.length > 0)
    if (open.length === 0) return out
    out.push(open[Math.floor(random() * open.length)]!.shift()!)
  }
}

export { ManualClock }

/** Ops of a raw block on node 1 (members 1 and 4 are homed there) that the fold must refuse, each with its code. */
export interface ScenarioResult {
  /** The codes the fold recorded for the raw block of refused ops on node 1, in op order (null: applied). */
  refusedBlock: { chain: string; seq: number; expected: (string | null)[] }
  /** Block positions the fold rejected whole: [chain, seq, code]. */
  rejectedBlocks: [string, number, string][]
  /** The codes the Ledger refused ops with before writing anything. */
  writerRefusals: { expected: string[]; got: string[] }
}

/**
 * A fixed run over 3 nodes (world of `ledgerWorld({ nodes: 3, membersPerNode: 2 })`, members 0,3 at node 0; 1,4 at
 * node 1; 2,5 at node 2): transfers within and across homes (one relying on credit from another chain), holds,
 * releases, settlements (with a fee, and to the treasury without), a raw block of ops every fold must refuse
 * (replay, wrong home, expired, TTL too long, unknown account, self transfer, wrong federation, not a member,
 * hold not found, invalid amount), a block dated backwards and one that does not fit the schema, refusals by
 * the writer (insufficient mana, replay, wrong home), regeneration up to the cap. The nodes sync after each round.
 */
export async function runLedgerScenario(nodes: LedgerNode[], clock: ManualClock): Promise<ScenarioResult> {
  const [n0, n1, n2] = nodes as [LedgerNode, LedgerNode, LedgerNode]
  const world = n0.world
  const r = new RecordMaker(world, clock, 'scn')
  const m = (i: number): string => world.members[i]!.did
  const node = (i: number): string => world.nodes[i]!.did
  clock.advance(1_000)

  // Round 1.
  const first = r.transfer(0, m(1), 100)
  const replayable = r.transfer(1, m(2), 150)
  const [, , h0, , h1, , , h2] = await Promise.all([
    n0.ledger!.transfer(first),
    n0.ledger!.transfer(r.transfer(3, node(1), 50)),
    n0.ledger!.hold(r.hold(0, 200)).then((x) => x.hold),
    n1.ledger!.transfer(replayable),
    n1.ledger!.hold(r.hold(4, 100)).then((x) => x.hold),
    n2.ledger!.transfer(r.transfer(2, 'treasury', 20)),
    n2.ledger!.transfer(r.transfer(5, m(0), 300)),
    n2.ledger!.hold(r.hold(5, 100)).then((x) => x.hold),
  ])
  await syncLedgers(nodes)
  clock.advance(5_000)

  // Round 2: member 0 spends more than its own mana, relying on the 300 member 5 paid it on node 2's chain.
  const [, , , , h3, , h4] = await Promise.all([
    n0.ledger!.settle(h0, node(2), 120),
    n0.ledger!.transfer(r.transfer(0, m(4), 400)),
    n1.ledger!.release(h1),
    n1.ledger!.transfer(r.transfer(1, m(5), 400)),
    n1.ledger!.hold(r.hold(4, 80)).then((x) => x.hold),
    n2.ledger!.settle(h2, 'treasury', 100),
    n2.ledger!.hold(r.hold(2, 50)).then((x) => x.hold),
  ])
  await syncLedgers(nodes)
  clock.advance(10_000)

  // Round 3: what every fold refuses, op by op, in one raw block of node 1.
  const outsider = seeded('outsider', 'signer')
  const foreign = signRecord(outsider, {
    kind: 'transfer',
    federation: world.setup.federation,
    member: outsider.did,
    to: m(1),
    amount: 5,
    nonce: 'outsider-0001',
    expires: clock.now() + 10_000,
  })
  const refused: [LedgerOp, string | null][] = [
    [{ op: 'transfer', record: replayable }, 'RECORD_REPLAYED'],
    [{ op: 'release', hold: h1 }, 'HOLD_NOT_FOUND'],
    [{ op: 'settle', hold: h0, to: m(1), amount: 1 }, 'HOLD_NOT_FOUND'],
    [{ op: 'transfer', record: r.transfer(0, m(1), 5) }, 'WRONG_HOME'],
    [{ op: 'transfer', record: r.transfer(4, m(1), 10, { expires: clock.now() - 1 }) }, 'RECORD_EXPIRED'],
    [
      { op: 'transfer', record: r.transfer(4, m(1), 10, { expires: clock.now() + 600_000 }) },
      'RECORD_TTL_TOO_LONG',
    ],
    [{ op: 'transfer', record: r.transfer(4, 'nobody', 10) }, 'UNKNOWN_ACCOUNT'],
    [{ op: 'transfer', record: r.transfer(4, m(4), 10) }, 'SELF_TRANSFER'],
    [{ op: 'transfer', record: r.transfer(1, m(2), 10, { federation: 'bafyother' }) }, 'WRONG_FEDERATION'],
    [{ op: 'transfer', record: foreign }, 'NOT_A_MEMBER'],
    [{ op: 'settle', hold: h3, to: m(0), amount: 1_000 }, 'INVALID_AMOUNT'],
    [{ op: 'settle', hold: h3, to: 'nobody', amount: 10 }, 'UNKNOWN_ACCOUNT'],
    [{ op: 'settle', hold: h3, to: m(4), amount: 10 }, 'SELF_TRANSFER'],
    [{ op: 'transfer', record: r.transfer(4, m(2), 30) }, null],
  ]
  const raw = await n1.rawBlock({ ops: refused.map(([op]) => op) })
  const backwards = await n2.rawBlock(
    { ops: [{ op: 'transfer', record: r.transfer(2, m(0), 1) }] },
    clock.now() - 20_000,
  )
  const misfit = await n2.rawBlock({ ops: [] })

  // Refused by the writer: nothing written.
  const expected = ['INSUFFICIENT_MANA', 'RECORD_REPLAYED', 'WRONG_HOME']
  const got = await Promise.all(
    [
      n0.ledger!.transfer(r.transfer(3, m(0), 1_000_000)),
      n0.ledger!.transfer(first),
      n0.ledger!.transfer(r.transfer(1, m(0), 1)),
    ].map((p) =>
      p.then(
        () => 'applied',
        (err: { code?: string }) => err.code ?? String(err),
      ),
    ),
  )
  await Promise.all([n1.ledger!.settle(h3, m(0), 80), n2.ledger!.release(h4)])
  await syncLedgers(nodes)
  clock.advance(100_000)

  // Round 4: regenerated to the cap.
  await Promise.all([
    n0.ledger!.transfer(r.transfer(3, m(5), 900)),
    n2.ledger!.transfer(r.transfer(2, m(3), 600)),
    n1.ledger!.transfer(r.transfer(4, node(0), 1)),
  ])
  await syncLedgers(nodes)
  return {
    refusedBlock: { chain: n1.chain, seq: raw.seq, expected: refused.map(([, code]) => code) },
    rejectedBlocks: [
      [n2.chain, backwards.seq, 'LEDGER_TIME_BACKWARDS'],
      [n2.chain, misfit.seq, 'SCHEMA_MISMATCH'],
    ],
    writerRefusals: { expected, got },
  }
}
