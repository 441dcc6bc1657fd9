/**
 * The books over the full stack, as a property (fast-check, fixed seed, bounded): random schedules of transfers,
 * holds, releases, settlements, replays (through the Ledger and in raw blocks), clock moves, syncs between nodes
 * and restarts (runner, ledger and store stopped and started again) over 2–3 nodes on real SQLite stores. After
 * every step, on every node, the API view at a fixed instant keeps the books: per account balance + held =
 * allocated + regenerated + received − sent − burned; Σ received = Σ sent; the live view equals the history's at
 * that instant; no account is below zero on its home node (nor anywhere once the nodes synced); every replay is
 * refused and changes nothing. At the end, synced nodes hold identical tables, give the same figures (books
 * balanced) as of every instant of the run, and a reindex rebuilds the tables.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { expect, it } from 'vitest'
import type { AccountView, HoldFields, SignedRecord, TransferFields } from '../../../src/economics/index.js'
import { dumpDifferences } from '../../../src/state/index.js'
import {
  brokenBooks,
  LEDGER_T0,
  LedgerNode,
  type LedgerWorld,
  ledgerWorld,
  ManualClock,
  RecordMaker,
  syncLedgers,
} from '../../helpers/ledger-stack.js'

const worlds = new Map<number, LedgerWorld>([
  [2, ledgerWorld({ seed: 'ledger-books-2', nodes: 2, membersPerNode: 2 })],
  [3, ledgerWorld({ seed: 'ledger-books-3', nodes: 3, membersPerNode: 2 })],
])

type Step =
  | { t: 'transfer'; member: number; to: number; amount: number }
  | { t: 'hold'; member: number; amount: number }
  | { t: 'release'; pick: number }
  | { t: 'settle'; pick: number; to: number; share: number }
  | { t: 'replay'; pick: number; raw: boolean }
  | { t: 'advance'; ms: number }
  | { t: 'sync' }
  | { t: 'restart'; node: number }
  | { t: 'stop'; node: number }

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('transfer' as const),
      member: fc.nat(5),
      to: fc.nat(9),
      amount: fc.integer({ min: 1, max: 900 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('hold' as const),
      member: fc.nat(5),
      amount: fc.integer({ min: 1, max: 600 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), pick: fc.nat(20) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('settle' as const),
      pick: fc.nat(20),
      to: fc.nat(9),
      share: fc.integer({ min: 0, max: 100 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('replay' as const), pick: fc.nat(50), raw: fc.boolean() }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 40_000 }) }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('sync' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restart' as const), node: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('stop' as const), node: fc.nat(2) }) },
)

const codeOf = (err: unknown): string => (err as { code?: string }).code ?? String(err)

async function checkBooks(
  nodes: LedgerNode[],
  clock: ManualClock,
  synced: boolean,
  label: string,
): Promise<void> {
  const at = clock.now()
  for (const n of nodes) {
    if (!n.running) continue
    const views: AccountView[] = await n.ledger!.accounts(at)
    expect(brokenBooks(views), `${label}: node ${n.index}`).toEqual([])
    expect(await n.ledger!.accounts(), `${label}: node ${n.index} live vs ?at`).toEqual(views)
    for (const v of views)
      if (synced || v.home === n.did)
        expect(v.balance, `${label}: ${v.did} on node ${n.index}`).toBeGreaterThanOrEqual(0)
  }
}

it('the books balance after every step of random schedules over 2–3 nodes, with replays and restarts', async () => {
  let runs = 0
  // What the schedules did, over all runs: each kind must really have happened.
  const did: Record<string, number> = {}
  const tally = (what: string): void => {
    did[what] = (did[what] ?? 0) + 1
  }
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(2, 3),
      fc.array(step, { minLength: 4, maxLength: 18 }),
      async (count, steps) => {
        runs++
        const world = worlds.get(count)!
        const clock = new ManualClock(LEDGER_T0)
        const dir = await mkdtemp(join(tmpdir(), 'icn-ledger-books-'))
        const nodes = world.nodes.map(
          (_, i) => new LedgerNode(world, i, { kind: 'sqlite', path: join(dir, `node${i}.sqlite`) }, clock),
        )
        const records = new RecordMaker(world, clock, `run${runs}`)
        const accepted: { home: number; record: SignedRecord<TransferFields> | SignedRecord<HoldFields> }[] =
          []
        const holds: { home: number; id: string; amount: number; open: boolean }[] = []
        const accounts = [...world.members.map((m) => m.did), ...world.nodes.map((s) => s.did), 'treasury']
        const up = async (i: number): Promise<LedgerNode> => nodes[i]!.start()
        try {
          for (const n of nodes) await n.start()
          let synced = true
          const instants: number[] = [clock.now()]
          for (const [k, s] of steps.entries()) {
            const label = `step ${k} ${JSON.stringify(s)}`
            switch (s.t) {
              case 'transfer': {
                const member = s.member % world.members.length
                const home = await up(world.homeOf(member))
                const record = records.transfer(member, accounts[s.to % accounts.length]!, s.amount)
                const r = await home.ledger!.transfer(record).then(
                  () => 'applied',
                  (err: unknown) => codeOf(err),
                )
                if (record.to === record.member) expect(r, label).toBe('SELF_TRANSFER')
                else expect(['applied', 'INSUFFICIENT_MANA'], label).toContain(r)
                if (r === 'applied') accepted.push({ home: home.index, record })
                tally(`transfer ${r}`)
                synced = false
                break
              }
              case 'hold': {
                const member = s.member % world.members.length
                const home = await up(world.homeOf(member))
                const record = records.hold(member, s.amount)
                const r = await home.ledger!.hold(record).then(
                  (x) => x.hold,
                  (err: unknown) => ({ code: codeOf(err) }),
                )
                if (typeof r === 'string') {
                  accepted.push({ home: home.index, record })
                  holds.push({ home: home.index, id: r, amount: s.amount, open: true })
                  tally('hold applied')
                } else expect(r.code, label).toBe('INSUFFICIENT_MANA')
                synced = false
                break
              }
              case 'release':
              case 'settle': {
                const h = holds[s.pick % Math.max(1, holds.length)]
                if (!h) break
                const home = await up(h.home)
                const to = s.t === 'settle' ? accounts[s.to % accounts.length]! : ''
                const amount = Math.floor((h.amount * (s.t === 'settle' ? s.share : 0)) / 100)
                const payer = home.world.members.find((m) => h.id.startsWith(`${m.did}/`))!.did
                const r = await (s.t === 'release'
                  ? home.ledger!.release(h.id)
                  : home.ledger!.settle(h.id, to, amount)
                ).then(
                  () => 'applied',
                  (err: unknown) => codeOf(err),
                )
                const expected = !h.open
                  ? 'HOLD_NOT_FOUND'
                  : s.t === 'settle' && to === payer
                    ? 'SELF_TRANSFER'
                    : 'applied'
                expect(r, label).toBe(expected)
                if (r === 'applied') h.open = false
                tally(`${s.t} ${r}`)
                synced = false
                break
              }
              case 'replay': {
                const a = accepted[s.pick % Math.max(1, accepted.length)]
                if (!a) break
                const home = await up(a.home)
                const expected = a.record.expires < clock.now() ? 'RECORD_EXPIRED' : 'RECORD_REPLAYED'
                const at = clock.now()
                const before = await home.ledger!.accounts(at)
                if (s.raw) {
                  // A (buggy or dishonest) home node writes the replay anyway: the fold refuses it.
                  const op = a.record.kind === 'transfer' ? 'transfer' : 'hold'
                  const b = await home.rawBlock({ ops: [{ op, record: a.record }] })
                  const [row] = await home
                    .runner!.reader()
                    .query('SELECT outcome, code FROM ledger_ops WHERE chain = $1 AND seq = $2', [
                      home.chain,
                      b.seq,
                    ])
                  expect(row, label).toMatchObject({ outcome: 'rejected', code: expected })
                  synced = false
                } else {
                  const r = await (a.record.kind === 'transfer'
                    ? home.ledger!.transfer(a.record as SignedRecord<TransferFields>)
                    : home.ledger!.hold(a.record as SignedRecord<HoldFields>)
                  ).then(
                    () => 'applied',
                    (err: unknown) => codeOf(err),
                  )
                  expect(r, label).toBe(expected)
                }
                expect(await home.ledger!.accounts(at), `${label}: a refused replay changes nothing`).toEqual(
                  before,
                )
                tally(`replay ${s.raw ? 'raw' : 'ledger'}`)
                break
              }
              case 'advance':
                clock.advance(s.ms)
                break
              case 'sync':
                await syncLedgers(nodes)
                synced = nodes.every((n) => n.running)
                break
              case 'restart':
                await nodes[s.node % count]!.stop()
                await up(s.node % count)
                tally('restart')
                break
              case 'stop':
                await nodes[s.node % count]!.stop()
                synced = false
                break
            }
            await checkBooks(nodes, clock, synced, label)
            instants.push(clock.now())
          }
          // Everyone up and synced: the same tables on every node, and a reindex rebuilds them.
          for (const n of nodes) await n.start()
          await syncLedgers(nodes)
          await checkBooks(nodes, clock, true, 'end')
          // The state as of every past instant of the run: the books hold, and every node gives the same figures.
          for (const t of new Set(instants)) {
            const [first, ...others] = await Promise.all(nodes.map((n) => n.ledger!.accounts(t)))
            expect(brokenBooks(first!), `at ${t}`).toEqual([])
            for (const o of others) expect(o, `at ${t}`).toEqual(first)
          }
          const dumps = await Promise.all(nodes.map((n) => n.dump()))
          for (const d of dumps.slice(1)) expect(dumpDifferences(dumps[0]!, d)).toEqual([])
          await nodes[0]!.runner!.reindex()
          expect(dumpDifferences(dumps[0]!, await nodes[0]!.dump())).toEqual([])
        } finally {
          for (const n of nodes) await n.stop()
          await rm(dir, { recursive: true, force: true })
        }
      },
    ),
    { seed: 20261201, numRuns: 25, endOnFailure: true },
  )
  expect(runs).toBeGreaterThanOrEqual(25)
  for (const what of [
    'transfer applied',
    'transfer INSUFFICIENT_MANA',
    'hold applied',
    'release applied',
    'settle applied',
    'replay raw',
    'replay ledger',
    'restart',
  ])
    expect(did[what] ?? 0, what).toBeGreaterThanOrEqual(3)
}, 120_000)
