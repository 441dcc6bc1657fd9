/**
 * The ledger over its full stack (real stores, a real ProjectionRunner with the ledger projection, ChainWriters
 * and Ledgers for three node identities): a run with every kind of op and refusal gives the same tables on every
 * node; the same blocks fed into fresh stores in any interleaving of the chains (one at a time while the runner
 * follows, or by CAR import before or after it starts, on SQLite and PostgreSQL) give the same tables; and
 * `reindex()` rebuilds them identical, table by table.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { importCar, type SqlRow } from '../../../src/dag/index.js'
import {
  checkRecordSignature,
  type RecordFields,
  type SignedRecord,
  signedBytes,
  VerifiedRecords,
} from '../../../src/economics/index.js'
import { type CheckResult, memberTag } from '../../../src/identity/index.js'
import { dumpDifferences } from '../../../src/state/index.js'
import {
  brokenBooks,
  carOf,
  interleave,
  LEDGER_T0,
  LedgerNode,
  type LedgerWorld,
  ledgerChains,
  ledgerWorld,
  ManualClock,
  openStore,
  prng,
  RecordMaker,
  runLedgerScenario,
  type StoreTarget,
  syncLedgers,
} from '../../helpers/ledger-stack.js'
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.js'

const dirs: string[] = []
const dbs: TestDatabase[] = []
const open: LedgerNode[] = []

afterAll(async () => {
  for (const n of open) await n.stop()
  for (const db of dbs) await db.drop()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

async function target(kind: 'sqlite' | 'postgres'): Promise<StoreTarget> {
  if (kind === 'postgres') {
    const db = await createTestDatabase()
    dbs.push(db)
    return { kind, url: db.url }
  }
  const dir = await mkdtemp(join(tmpdir(), 'icn-ledger-state-'))
  dirs.push(dir)
  return { kind, path: join(dir, 'store.sqlite') }
}

async function node(
  world: LedgerWorld,
  index: number,
  kind: 'sqlite' | 'postgres',
  clock: ManualClock,
  options: ConstructorParameters<typeof LedgerNode>[4] = {},
): Promise<LedgerNode> {
  const n = new LedgerNode(world, index, await target(kind), clock, options)
  open.push(n)
  return n.start()
}

/** A record's signed fields (without its signature). */
function fieldsOf(record: SignedRecord): RecordFields {
  const { sig: _sig, ...fields } = record
  return fields as RecordFields
}

function expectSameTables(a: Record<string, SqlRow[]>, b: Record<string, SqlRow[]>): void {
  expect(dumpDifferences(a, b)).toEqual([])
  // dumpDifferences compares canonically; the rows themselves must be equal too.
  expect(b).toEqual(a)
}

async function opCodes(n: LedgerNode, chain: string, seq: number): Promise<(string | null)[]> {
  const rows = await n
    .runner!.reader()
    .query('SELECT idx, code FROM ledger_ops WHERE chain = $1 AND seq = $2 ORDER BY idx', [chain, seq])
  return rows.map((r) => (r.code === null ? null : String(r.code)))
}

/** The scenario's producers, on one backend, stay open for the later tests of the file. */
const produced = new Map<'sqlite' | 'postgres', { nodes: LedgerNode[]; clock: ManualClock }>()

describe.each(['sqlite', 'postgres'] as const)('the ledger over the full stack (%s)', (kind) => {
  it('a run with every kind of op: refusals recorded, books balanced, every node the same tables', async () => {
    const world = ledgerWorld({ seed: 'ledger-state', nodes: 3, membersPerNode: 2 })
    const clock = new ManualClock(LEDGER_T0)
    const nodes = [
      await node(world, 0, kind, clock),
      await node(world, 1, kind, clock),
      await node(world, 2, kind, clock),
    ]
    const result = await runLedgerScenario(nodes, clock)
    produced.set(kind, { nodes, clock })

    expect(result.writerRefusals.got).toEqual(result.writerRefusals.expected)
    for (const n of nodes) {
      expect(await opCodes(n, result.refusedBlock.chain, result.refusedBlock.seq)).toEqual(
        result.refusedBlock.expected,
      )
      const rejections = (await n.dump()).state_rejections!.map((r) => [r.chain, r.seq, r.code])
      expect(rejections).toEqual(result.rejectedBlocks)
      const at = clock.now()
      const now = await n.ledger!.accounts()
      const asOf = await n.ledger!.accounts(at)
      expect(brokenBooks(now)).toEqual([])
      // The live figures and the history's figures at the same instant agree.
      expect(asOf).toEqual(now)
      for (const v of now) expect(v.balance, v.did).toBeGreaterThanOrEqual(0)
      // Something of every kind moved.
      expect(now.some((v) => v.regenerated > 0)).toBe(true)
      expect(now.find((v) => v.did === 'treasury')!.received).toBeGreaterThan(0)
    }
    const holds = (await nodes[0]!.dump()).ledger_holds!.map((h) => h.status).sort()
    expect(holds).toEqual(['released', 'released', 'settled', 'settled', 'settled'])
    const [a, b, c] = await Promise.all(nodes.map((n) => n.dump()))
    expectSameTables(a!, b!)
    expectSameTables(a!, c!)
  })

  it('reindex() rebuilds every table identical, on every node', async () => {
    const { nodes } = produced.get(kind)!
    for (const n of nodes) {
      const before = await n.dump()
      expect(before.ledger_ops!.length).toBeGreaterThan(20)
      const r = await n.runner!.reindex()
      const blocks = [...(await ledgerChains(n.store!)).values()].reduce((k, c) => k + c.length, 0)
      expect(r.blocks).toBe(blocks)
      expectSameTables(before, await n.dump())
    }
  })
})

describe('account lists', () => {
  it('come in the same order on SQLite and on a PostgreSQL database with a language’s collation', async () => {
    const world = ledgerWorld({ seed: 'ledger-order', nodes: 2, membersPerNode: 10 })
    const clock = new ManualClock(LEDGER_T0 + 1_000)
    const a = await node(world, 0, 'sqlite', clock)
    const db = await createTestDatabase({ icuLocale: 'en-US' })
    dbs.push(db)
    const b = new LedgerNode(world, 1, { kind: 'postgres', url: db.url }, clock)
    open.push(b)
    await b.start()
    const dids = (await a.ledger!.accounts()).map((v) => v.did)
    expect(dids).toEqual([...dids].sort())
    // The database's own order differs (en-US puts a before B; code units put B first)...
    const collated = await b.runner!.reader().query('SELECT did FROM ledger_accounts ORDER BY did')
    expect(collated.map((r) => String(r.did))).not.toEqual(dids)
    // ...and the lists do not follow it: now and as of an instant, as on every other node.
    expect((await b.ledger!.accounts()).map((v) => v.did)).toEqual(dids)
    expect((await b.ledger!.accounts(clock.now())).map((v) => v.did)).toEqual(dids)
    expect((await a.ledger!.accounts(clock.now())).map((v) => v.did)).toEqual(dids)
  })
})

describe('the same blocks in any order', () => {
  it('fed into fresh stores in shuffled interleavings, by CAR import, on SQLite and PostgreSQL: identical tables', async () => {
    const { nodes, clock } = produced.get('sqlite')!
    const world = nodes[0]!.world
    const expected = await nodes[0]!.dump()
    const chains = await ledgerChains(nodes[0]!.store!)
    expect(chains.size).toBe(3)
    const total = [...chains.values()].reduce((k, c) => k + c.length, 0)
    // A reader's clock at the producers' last time: no block lies ahead of it.
    const readerClock = new ManualClock(clock.now())

    const seen = new Set<string>()
    for (const seed of [1, 2, 3, 4, 5]) {
      const order = interleave(chains, prng(seed))
      expect(order).toHaveLength(total)
      seen.add(order.map((b) => b.cid.toString()).join())
      const reader = await node(world, -1, 'sqlite', readerClock)
      for (const b of order) await reader.store!.put(b)
      await reader.caughtUp()
      expectSameTables(expected, await reader.dump())
      await reader.stop()
    }
    // The orders really were different.
    expect(seen.size).toBe(5)

    // A node that is one of the writers folds the others' chains the same (its own chain with `own: true`).
    const writer = await node(world, 1, 'sqlite', readerClock)
    for (const b of interleave(chains, prng(99))) await writer.store!.put(b)
    await writer.caughtUp()
    expectSameTables(expected, await writer.dump())
    await writer.stop()

    // PostgreSQL, in yet another order.
    const pg = await node(world, -1, 'postgres', readerClock)
    for (const b of interleave(chains, prng(7))) await pg.store!.put(b)
    await pg.caughtUp()
    expectSameTables(expected, await pg.dump())
    await pg.stop()

    // CAR import into a store whose runner is already following, and into one before its runner starts.
    const car = await carOf(nodes[2]!.store!)
    const following = await node(world, -1, 'sqlite', readerClock)
    expect((await importCar(following.store!, car)).stored).toBe(total)
    await following.caughtUp()
    expectSameTables(expected, await following.dump())
    await following.stop()

    // Imported before the runner starts, the chains fold many blocks per transaction (their rows written once
    // at its end, the later blocks reading the earlier ones' from the fold's own view), or one per transaction.
    for (const batchBlocks of [1, 64]) {
      const imported = new LedgerNode(world, -1, await target('sqlite'), readerClock, { batchBlocks })
      open.push(imported)
      const store = openStore(imported.target)
      await store.open()
      await importCar(store, car)
      await store.close()
      await imported.start()
      await imported.caughtUp()
      expectSameTables(expected, await imported.dump())
      await imported.stop()
    }

    const later = new LedgerNode(world, -1, await target('postgres'), readerClock)
    open.push(later)
    const raw = openStore(later.target)
    await raw.open()
    await importCar(raw, car)
    await raw.close()
    await later.start()
    await later.caughtUp()
    expectSameTables(expected, await later.dump())
  })
})

describe('a fold is a function of the blocks alone', () => {
  it('a bad member signature in the writer node’s own block folds as refused there too, as on every other node', async () => {
    const world = ledgerWorld({ seed: 'ledger-own', nodes: 2, membersPerNode: 1 })
    const clock = new ManualClock(LEDGER_T0 + 1_000)
    const [a, b] = [await node(world, 0, 'sqlite', clock), await node(world, 1, 'sqlite', clock)]
    const record = new RecordMaker(world, clock, 'own').transfer(0, world.members[1]!.did, 10)
    const forged = { ...record, sig: record.sig.map((x, i) => (i === 0 ? x ^ 1 : x)) }
    // Written past the Ledger's own checks (a bug or a tampered writer): the fold must not trust its author.
    await a!.rawBlock({ ops: [{ op: 'transfer', record: forged }] })
    await syncLedgers([a!, b!])
    for (const n of [a!, b!])
      expect(await opCodes(n, a!.chain, 0), `node ${n.index}`).toEqual(['INVALID_RECORD_SIGNATURE'])
    expectSameTables(await a!.dump(), await b!.dump())
    expect((await a!.ledger!.account(world.members[0]!.did))!.sent).toBe(0)
  })

  it('control characters in a record’s strings fold the block as SCHEMA_MISMATCH on SQLite and PostgreSQL alike', async () => {
    // PostgreSQL text cannot hold U+0000: a fold that wrote such a string (a refused op's member or reason, a
    // hold's purpose) would fault there and apply on SQLite. The record rules refuse control characters instead.
    const world = ledgerWorld({ seed: 'ledger-nul', nodes: 2, membersPerNode: 1 })
    const clock = new ManualClock(LEDGER_T0 + 1_000)
    const a = await node(world, 0, 'sqlite', clock)
    const b = await node(world, 1, 'postgres', clock)
    const maker = new RecordMaker(world, clock, 'nul')
    const bodies = [
      {
        ops: [
          // Not signed by that member (signRecord refuses to): the schema decides before the signature.
          {
            op: 'transfer',
            record: { ...maker.transfer(0, world.members[1]!.did, 10), member: 'did:x\u0000' },
          },
        ],
      },
      {
        ops: [
          { op: 'transfer', record: { ...maker.transfer(0, world.members[1]!.did, 10), to: 'did:\u0000' } },
        ],
      },
      { ops: [{ op: 'hold', record: { ...maker.hold(0, 5), purpose: 'job\u0000' } }] },
      { ops: [{ op: 'release', hold: 'h\u001f' }] },
      {
        ops: [
          {
            op: 'transfer',
            record: { ...maker.transfer(0, world.members[1]!.did, 10), federation: 'f\u007f' },
          },
        ],
      },
    ]
    for (const body of bodies) await a!.rawBlock(body)
    await syncLedgers([a!, b!])
    for (const n of [a!, b!]) {
      expect(n.runner!.status().ready, `node ${n.index}`).toBe(true)
      const rejected = (await n.dump()).state_rejections!.map((r) => [r.seq, r.code])
      expect(rejected, `node ${n.index}`).toEqual(bodies.map((_, seq) => [seq, 'SCHEMA_MISMATCH']))
    }
    expectSameTables(await a!.dump(), await b!.dump())
  })

  it('the writer refuses an op that breaks the block rules (MALFORMED_RECORD) and writes the rest of its batch', async () => {
    // A hold signed by its member with a newline in its purpose: its signature verifies, but a block holding it
    // would fold as SCHEMA_MISMATCH everywhere, taking the other ops of its batch along.
    const world = ledgerWorld({ seed: 'ledger-writer-shape', nodes: 1, membersPerNode: 2 })
    const clock = new ManualClock(LEDGER_T0 + 1_000)
    const a = await node(world, 0, 'sqlite', clock)
    const m = world.members[0]!
    const fields = {
      kind: 'hold' as const,
      federation: world.setup.federation,
      member: m.did,
      amount: 5,
      purpose: 'job\nfor you',
      nonce: 'shape-00000001',
      expires: clock.now() + 10_000,
    }
    const bad = { ...fields, sig: m.signWithDomain(memberTag('hold'), signedBytes(fields)) }
    expect(checkRecordSignature(bad)).toBe('verified')
    const good = new RecordMaker(world, clock, 'shape').transfer(1, m.did, 7)
    const [held, paid] = await Promise.allSettled([a.ledger!.hold(bad), a.ledger!.transfer(good)])
    expect(held).toMatchObject({ status: 'rejected', reason: { code: 'MALFORMED_RECORD' } })
    expect(paid.status).toBe('fulfilled')
    expect((await a.dump()).state_rejections).toEqual([])
    expect((await a.ledger!.account(m.did))!.received).toBe(7)
  })

  it('remembered verifications change no outcome: a forged record is refused even with a valid one of the same body remembered', async () => {
    const world = ledgerWorld({ seed: 'ledger-cache', nodes: 2, membersPerNode: 1 })
    const clock = new ManualClock(LEDGER_T0 + 1_000)
    const verified = new VerifiedRecords()
    const checks: Record<CheckResult, number> = { verified: 0, cached: 0, invalid: 0 }
    const a = await node(world, 0, 'sqlite', clock, {
      verified,
      onSignatureChecks: (c) => {
        for (const k of Object.keys(c) as CheckResult[]) checks[k] += c[k]
      },
    })
    const b = await node(world, 1, 'sqlite', clock)
    const maker = new RecordMaker(world, clock, 'cache')
    const valid = maker.transfer(0, world.members[1]!.did, 10)
    // What the API does when it takes a record: verify it, and remember it verified.
    expect(checkRecordSignature(valid)).toBe('verified')
    verified.add(valid)
    // The same body with another signature (one bit off; another key's), and the valid signature on other bodies.
    const flipped = { ...valid, sig: valid.sig.map((x, i) => (i === 0 ? x ^ 1 : x)) }
    const otherKey = {
      ...valid,
      sig: world.members[1]!.signWithDomain(memberTag('transfer'), signedBytes(fieldsOf(valid))),
    }
    const otherAmount = { ...valid, amount: 11 }
    const otherNonce = { ...valid, nonce: `${valid.nonce}x` }
    const forgeries = [flipped, otherKey, otherAmount, otherNonce]
    for (const forged of forgeries) await a!.rawBlock({ ops: [{ op: 'transfer', record: forged }] })
    expect(checks).toEqual({ verified: 0, cached: 0, invalid: forgeries.length })
    // The valid record itself: found (not verified again) and applied.
    await a!.rawBlock({ ops: [{ op: 'transfer', record: valid }] })
    expect(checks).toEqual({ verified: 0, cached: 1, invalid: forgeries.length })
    await syncLedgers([a!, b!])
    for (const n of [a!, b!]) {
      for (const seq of forgeries.keys())
        expect(await opCodes(n, a!.chain, seq), `node ${n.index} seq ${seq}`).toEqual([
          'INVALID_RECORD_SIGNATURE',
        ])
      expect(await opCodes(n, a!.chain, forgeries.length), `node ${n.index}`).toEqual([null])
    }
    // The node that remembered nothing verified every one of them itself, and came to the same tables.
    expectSameTables(await a!.dump(), await b!.dump())
    expect((await a!.ledger!.account(world.members[0]!.did))!.sent).toBe(10)
  })
})
