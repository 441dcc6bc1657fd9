import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type Block,
  type BlockStore,
  chainId,
  createSignedBlock,
  SqliteBlockStore,
  type SqlRow,
} from '../../../src/dag/index.js'
import { PostgresBlockStore } from '../../../src/dag/postgres.js'
import { Signer } from '../../../src/identity/index.js'
import { createMetrics, type Metrics } from '../../../src/observability/index.js'
import {
  dumpDifferences,
  type Projection,
  ProjectionRunner,
  type ProjectionRunnerOptions,
  SCHEMA_MISMATCH,
} from '../../../src/state/index.js'
import { ManualClock } from '../../helpers/manual-clock.js'
import { createTestDatabase, rewritePgUrl, TcpProxy, type TestDatabase } from '../../helpers/pg.js'
import {
  type FixtureHooks,
  fixtureBlock,
  fixtureChain,
  valueProjection,
} from '../../helpers/value-projection.js'

/** One backing database that can be opened again (a restart). */
interface Backend {
  name: 'sqlite' | 'postgres'
  open(): Promise<BlockStore>
  drop(): Promise<void>
}

async function sqliteBackend(): Promise<Backend> {
  const dir = mkdtempSync(join(tmpdir(), 'icn-state-'))
  return {
    name: 'sqlite',
    async open() {
      const s = new SqliteBlockStore({ path: join(dir, 'store.sqlite') })
      await s.open()
      return s
    },
    async drop() {
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function postgresBackend(): Promise<Backend> {
  const db: TestDatabase = await createTestDatabase()
  return {
    name: 'postgres',
    async open() {
      const s = new PostgresBlockStore({ url: db.url, poolSize: 4 })
      await s.open()
      return s
    },
    drop: () => db.drop(),
  }
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function backend(kind: 'sqlite' | 'postgres'): Promise<Backend> {
  const b = kind === 'sqlite' ? await sqliteBackend() : await postgresBackend()
  cleanups.push(() => b.drop())
  return b
}

async function openStore(b: Backend): Promise<BlockStore> {
  const s = await b.open()
  cleanups.push(() => s.close())
  return s
}

function runnerFor(
  store: BlockStore,
  projections: Projection[],
  opts: { clock?: ManualClock; metrics?: Metrics; options?: ProjectionRunnerOptions } = {},
): ProjectionRunner {
  const r = new ProjectionRunner(opts.options ?? { batchBlocks: 4 }, {
    store,
    clock: opts.clock,
    metrics: opts.metrics,
  })
  for (const p of projections) r.register(p)
  cleanups.push(() => r.stop())
  return r
}

const values = (signer: Signer): string => chainId(signer.did, 'values')

async function counter(metrics: Metrics, outcome: string): Promise<number> {
  const { values: v } = await metrics.projectionBlocks.get()
  return v.filter((x) => x.labels.outcome === outcome).reduce((n, x) => n + x.value, 0)
}

/** A deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Interleave chains (each kept in order) by a seeded random choice of the next chain. */
function interleave<T>(chains: T[][], seed: number): T[] {
  const rnd = prng(seed)
  const pos = chains.map(() => 0)
  const out: T[] = []
  for (;;) {
    const open = chains.map((c, i) => (pos[i]! < c.length ? i : -1)).filter((i) => i >= 0)
    if (open.length === 0) return out
    const i = open[Math.floor(rnd() * open.length)]!
    out.push(chains[i]![pos[i]!]!)
    pos[i]!++
  }
}

describe('ProjectionRunner: lifecycle and registration', () => {
  it('start twice and stop twice are fine; stop before start is fine; register after start fails', async () => {
    const store = await openStore(await backend('sqlite'))
    const idle = runnerFor(store, [valueProjection()])
    await idle.stop()
    await idle.stop()
    expect(idle.lifecycle).toBe('stopped')

    const r = runnerFor(store, [valueProjection()])
    await r.start()
    await r.start()
    expect(r.status()).toMatchObject({ ready: true })
    expect(() => r.register(valueProjection({}, 1, 'other'))).toThrow(
      expect.objectContaining({ code: 'PROJECTION_INVALID' }),
    )
    await r.stop()
    await r.stop()
    expect(r.status()).toMatchObject({ ready: false })
    await expect(r.waitFor('x/values', 0)).rejects.toMatchObject({ code: 'RUNNER_STOPPED' })
  })

  it('stop while starting wins: start rejects RUNNER_STOPPED and nothing runs afterwards', async () => {
    const store = await openStore(await backend('sqlite'))
    let release!: () => void
    let entered!: () => void
    const inInit = new Promise<void>((resolve) => {
      entered = resolve
    })
    const base = valueProjection()
    const slow: Projection = {
      ...base,
      async init(tx) {
        entered()
        await new Promise<void>((resolve) => {
          release = resolve
        })
        await base.init!(tx)
      },
    }
    const r = runnerFor(store, [slow])
    const starting = r.start()
    await inInit
    await r.stop()
    release()
    await expect(starting).rejects.toMatchObject({ code: 'RUNNER_STOPPED' })
    expect(r.lifecycle).toBe('stopped')
    expect(r.status().ready).toBe(false)
  })

  it('refuses duplicate names, a module with different migrations under one name, migrations out of order', async () => {
    const store = await openStore(await backend('sqlite'))
    const r = runnerFor(store, [valueProjection()])
    expect(() => r.register(valueProjection())).toThrow(
      expect.objectContaining({ code: 'PROJECTION_INVALID' }),
    )
    const p = valueProjection({}, 1, 'second')
    const other = { ...p, module: { ...p.module, migrations: p.module.migrations.slice(0, 1) } }
    expect(() => r.register(other)).toThrow(expect.objectContaining({ code: 'PROJECTION_INVALID' }))
    const gap = {
      ...p,
      name: 'gap',
      module: { ...p.module, name: 'gap', migrations: p.module.migrations.slice(1) },
    }
    expect(() => r.register(gap)).toThrow(expect.objectContaining({ code: 'PROJECTION_INVALID' }))
    // The same module object shared by two projections is fine.
    r.register(valueProjection({}, 1, 'shared'))
    expect(r.projections).toEqual(['fixture.values', 'shared'])
  })

  it('a database whose module schema is newer than the code fails STATE_SCHEMA_TOO_NEW', async () => {
    const b = await backend('sqlite')
    const store = await openStore(b)
    const r = runnerFor(store, [valueProjection()])
    await r.start()
    await r.stop()
    await store
      .sql()
      .query('INSERT INTO state_migrations (module, version, applied_at) VALUES ($1, $2, $3)', [
        'fixture',
        3,
        0,
      ])
    const again = runnerFor(store, [valueProjection()])
    await expect(again.start()).rejects.toMatchObject({ code: 'STATE_SCHEMA_TOO_NEW' })
    expect(again.lifecycle).toBe('stopped')
  })
})

describe.each(['sqlite', 'postgres'] as const)('ProjectionRunner on %s', (kind) => {
  it('catches up at start, follows commits, and resumes after a restart without folding anything twice', async () => {
    const b = await backend(kind)
    let store = await openStore(b)
    const alice = Signer.generate()
    const blocks = fixtureChain(
      alice,
      values(alice),
      Array.from({ length: 10 }, (_, i) => ({ n: i + 1 })),
    )
    await store.putMany(blocks.slice(0, 5))
    const metrics = createMetrics({ collectProcess: false })
    let r = runnerFor(store, [valueProjection()], { metrics })
    await r.start()
    // Caught up by the time start resolves.
    expect((await r.dump()).fixture_chains).toEqual([{ chain: values(alice), blocks: 5, total: 15 }])
    await store.putMany(blocks.slice(5, 7))
    await r.waitFor(values(alice), 6)
    expect((await r.dump()).fixture_chains).toEqual([{ chain: values(alice), blocks: 7, total: 28 }])
    expect(await r.lag()).toEqual([{ projection: 'fixture.values', blocks: 0 }])
    expect(await counter(metrics, 'applied')).toBe(7)
    expect(
      await r.reader().query('SELECT total FROM fixture_chains WHERE chain = $1', [values(alice)]),
    ).toEqual([{ total: 28 }])

    await r.stop()
    await store.putMany(blocks.slice(7))
    await store.close()
    store = await openStore(b)
    r = runnerFor(store, [valueProjection()], { metrics })
    await r.start()
    const dump = await r.dump()
    expect(dump.fixture_chains).toEqual([{ chain: values(alice), blocks: 10, total: 55 }])
    expect(dump.fixture_blocks!.map((x) => x.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(dump.fixture_totals).toEqual([{ k: 'all', blocks: 10, total: 55 }])
    expect(dump.state_cursors).toEqual([
      { projection: 'fixture.values', chain: values(alice), seq: 9, cid: blocks[9]!.cid.toString() },
    ])
    expect(await counter(metrics, 'applied')).toBe(10)
  })

  it('folds blocks as the store committed them, without reading them back; what it did not see it reads', async () => {
    const b = await backend(kind)
    const store = await openStore(b)
    const alice = Signer.generate()
    const blocks = fixtureChain(
      alice,
      values(alice),
      Array.from({ length: 6 }, (_, i) => ({ n: i + 1 })),
    )
    await store.putMany(blocks.slice(0, 2))
    const read: number[] = []
    const chainRange = store.chainRange.bind(store)
    store.chainRange = (chain, from, limit, options) => {
      read.push(from)
      return chainRange(chain, from, limit, options)
    }
    const r = runnerFor(store, [valueProjection()])
    await r.start()
    expect(read).toContain(0) // committed before the runner started: read from the store
    read.length = 0
    for (const blk of blocks.slice(2)) await store.putMany([blk])
    await r.waitFor(values(alice), 5)
    expect(read).toEqual([])
    expect((await r.dump()).fixture_chains).toEqual([{ chain: values(alice), blocks: 6, total: 21 }])
    // The same tables as a fold that reads every block from the store.
    const before = await r.dump()
    await r.reindex()
    expect(read).toContain(0)
    expect(dumpDifferences(before, await r.dump())).toEqual([])
  })

  it('the same blocks in different cross-chain orders give identical dumps, and reindex reproduces them', async () => {
    const signers = [Signer.generate(), Signer.generate(), Signer.generate()]
    const chains = signers.map((s, k) =>
      fixtureChain(
        s,
        values(s),
        Array.from({ length: 9 }, (_, i) =>
          i === 4 ? { n: 13 } : i === 6 && k === 1 ? { wrong: true } : { n: i * (k + 1) },
        ),
      ),
    )
    const dumps: Record<string, SqlRow[]>[] = []
    // Three orders on SQLite, two on PostgreSQL (a database each).
    for (const seed of kind === 'sqlite' ? [1, 2, 3] : [1, 2]) {
      const store = await openStore(await backend(kind))
      const r = runnerFor(store, [valueProjection()])
      const order = interleave<Block>(chains, seed)
      // Some blocks before the runner starts, the rest one by one while it follows.
      await store.putMany(order.slice(0, 5))
      await r.start()
      for (const blk of order.slice(5)) await store.put(blk)
      for (const s of signers) await r.waitFor(values(s), 8)
      const dump = await r.dump()
      dumps.push(dump)
      const result = await r.reindex()
      expect(result.blocks).toBe(27)
      expect(dumpDifferences(dump, await r.dump())).toEqual([])
    }
    expect(dumpDifferences(dumps[0]!, dumps[1]!)).toEqual([])
    if (dumps[2]) expect(dumpDifferences(dumps[0]!, dumps[2])).toEqual([])
    const d = dumps[0]!
    expect(d.fixture_totals).toEqual([{ k: 'all', blocks: 23, total: 32 + 52 + 96 }])
    expect(d.state_rejections).toHaveLength(4)
  })
})

describe('ProjectionRunner: the block it folds', () => {
  it('is the one the store decoded for a block a commit just stored; after a restart it is decoded from the store', async () => {
    const b = await backend('sqlite')
    const store = await openStore(b)
    const seen: unknown[] = []
    const committed: unknown[] = []
    store.onCommit((e) => {
      for (const x of e.blocks) committed.push(x.block)
    })
    const s = Signer.generate()
    const chain = values(s)
    const blocks = fixtureChain(s, chain, [{ n: 1 }, { n: 2 }])
    const r = runnerFor(store, [valueProjection({ beforeFold: (ctx) => void seen.push(ctx.block) })])
    await r.start()
    await store.putMany(blocks)
    await r.waitFor(chain, 1)
    expect(seen).toHaveLength(2)
    expect(seen[0]).toBe(committed[0])
    expect(seen[1]).toBe(committed[1])
    // Refolded from the store: decoded anew, and the same content.
    seen.length = 0
    await r.reindex()
    expect(seen).toHaveLength(2)
    expect(seen[0]).not.toBe(committed[0])
    expect(seen[0]).toEqual(committed[0])
  })
})

describe('ProjectionRunner: outcomes', () => {
  it('a body that does not fit the schema folds as rejected (SCHEMA_MISMATCH), stored and counted; other types skip', async () => {
    const store = await openStore(await backend('sqlite'))
    const alice = Signer.generate()
    const chain = values(alice)
    const [b0, b1] = fixtureChain(alice, chain, [{ n: 1 }, { n: -5 }])
    const b2 = createSignedBlock(alice, {
      type: 'icn.other/v1',
      chain,
      seq: 2,
      prev: b1!.cid,
      ts: 1,
      body: { anything: 1 },
    })
    const b3 = fixtureBlock(alice, chain, 3, b2.cid, { n: 13 })
    const b4 = fixtureBlock(alice, chain, 4, b3.cid, { n: 4 })
    await store.putMany([b0!, b1!, b2, b3, b4])
    const metrics = createMetrics({ collectProcess: false })
    const r = runnerFor(store, [valueProjection()], { metrics })
    await r.start()
    await r.waitFor(chain, 4)
    const dump = await r.dump()
    expect(dump.fixture_chains).toEqual([{ chain, blocks: 2, total: 5 }])
    expect(dump.state_rejections).toEqual([
      expect.objectContaining({ chain, seq: 1, cid: b1!.cid.toString(), code: SCHEMA_MISMATCH }),
      expect.objectContaining({ chain, seq: 3, code: 'UNLUCKY', reason: 'thirteen' }),
    ])
    expect(String(dump.state_rejections![0]!.reason)).toContain('/inline/n')
    expect(await counter(metrics, 'applied')).toBe(2)
    expect(await counter(metrics, 'rejected')).toBe(2)
    expect(await counter(metrics, 'skipped')).toBe(1)
    expect(await store.has(b1!.cid)).toBe(true)
  })

  it('deferred keeps the cursor before the block and retries at untilMs on the injected clock', async () => {
    const store = await openStore(await backend('sqlite'))
    const clock = new ManualClock(1_000_000)
    const alice = Signer.generate()
    const chain = values(alice)
    const blocks = fixtureChain(alice, chain, [{ n: 1 }, { n: 2, notBefore: 1_005_000 }, { n: 3 }])
    await store.putMany(blocks)
    const metrics = createMetrics({ collectProcess: false })
    const r = runnerFor(store, [valueProjection()], { clock, metrics })
    await r.start()
    await r.waitFor(chain, 0)
    expect(await r.lag()).toEqual([{ projection: 'fixture.values', blocks: 2 }])
    expect(await counter(metrics, 'deferred')).toBe(1)
    let done = false
    const waiting = r.waitFor(chain, 2).then(() => {
      done = true
    })
    clock.advance(4_999)
    expect(clock.pending).toBe(1)
    clock.advance(1)
    await waiting
    expect(done).toBe(true)
    expect((await r.dump()).fixture_chains).toEqual([{ chain, blocks: 3, total: 6 }])
  })

  it('a fold that throws rolls back, stops the projection (status not ready), and it recovers by itself', async () => {
    const store = await openStore(await backend('sqlite'))
    const clock = new ManualClock()
    const alice = Signer.generate()
    const chain = values(alice)
    const blocks = fixtureChain(alice, chain, [{ n: 1 }, { n: 2 }, { n: 3 }])
    const hooks: FixtureHooks = {}
    let failing = true
    hooks.beforeFold = (ctx) => {
      if (failing && ctx.block.seq === 1) throw new Error('disk on fire')
    }
    const metrics = createMetrics({ collectProcess: false })
    const r = runnerFor(store, [valueProjection(hooks)], {
      clock,
      metrics,
      options: { batchBlocks: 1, retryMinMs: 100, retryMaxMs: 1000 },
    })
    await r.start()
    const fault = r.waitFor(chain, 2)
    await store.putMany(blocks)
    await expect(fault).rejects.toMatchObject({ code: 'PROJECTION_FAULTED', details: { chain, seq: 1 } })
    expect(r.status().ready).toBe(false)
    expect(r.status().detail).toContain('disk on fire')
    await expect(r.waitFor(chain, 2)).rejects.toMatchObject({ code: 'PROJECTION_FAULTED' })
    expect((await metrics.projectionFaults.get()).values[0]?.value).toBe(1)
    expect((await metrics.projectionUp.get()).values[0]?.value).toBe(0)
    // Block 0 folded, block 1 rolled back: nothing of it is in the tables.
    expect((await r.dump()).fixture_chains).toEqual([{ chain, blocks: 1, total: 1 }])

    // Still failing at the first retry: backoff doubles (100 ms, then 200 ms).
    await new Promise<void>((resolve) => {
      const off = metrics.projectionFaults
      const check = async (): Promise<void> => {
        if (((await off.get()).values[0]?.value ?? 0) >= 2) resolve()
        else setImmediate(() => void check())
      }
      clock.advance(100)
      void check()
    })
    failing = false
    clock.advance(200)
    await vitestUntil(() => r.status().ready)
    await r.waitFor(chain, 2)
    expect((await r.dump()).fixture_chains).toEqual([{ chain, blocks: 3, total: 6 }])
    expect((await metrics.projectionUp.get()).values[0]?.value).toBe(1)
  })

  it.each(['sqlite', 'postgres'] as const)(
    'beforeCommit runs once the transaction’s blocks are folded, in it; one that throws commits nothing (%s)',
    async (kind) => {
      const store = await openStore(await backend(kind))
      const alice = Signer.generate()
      const chain = values(alice)
      const hooks: FixtureHooks = {}
      const perTx = new WeakMap<object, number[]>()
      const flushed: number[][] = []
      let failing = false
      hooks.beforeFold = (ctx) => {
        const mine = perTx.get(ctx.tx)
        if (mine) {
          mine.push(ctx.block.seq)
          return
        }
        const folded = [ctx.block.seq]
        perTx.set(ctx.tx, folded)
        ctx.beforeCommit(async () => {
          if (failing) throw new Error('flush failed')
          // Written in the fold's transaction: committed with the blocks' rows and the cursor, or not at all.
          await ctx.tx.query('UPDATE fixture_totals SET blocks = blocks + 1000 WHERE k = $1', ['all'])
          flushed.push(folded)
        })
      }
      const r = runnerFor(store, [valueProjection(hooks)], {
        options: { batchBlocks: 4, retryMinMs: 60_000 },
      })
      await r.start()
      const blocks = fixtureChain(
        alice,
        chain,
        [1, 2, 3, 4, 5, 6, 7, 8].map((n) => ({ n })),
      )
      await store.putMany(blocks.slice(0, 6))
      await r.waitFor(chain, 5)
      // Six blocks, four per transaction: two transactions, each hook after all of its blocks.
      expect(flushed).toEqual([
        [0, 1, 2, 3],
        [4, 5],
      ])
      expect((await r.dump()).fixture_totals).toEqual([{ k: 'all', blocks: 2006, total: 21 }])

      failing = true
      const fault = r.waitFor(chain, 7)
      await store.putMany(blocks.slice(6))
      await expect(fault).rejects.toMatchObject({ code: 'PROJECTION_FAULTED' })
      expect(r.status().detail).toContain('flush failed')
      // Nothing of the failed transaction: neither the blocks' rows nor the cursor moved.
      expect((await r.dump()).fixture_totals).toEqual([{ k: 'all', blocks: 2006, total: 21 }])
      expect(r.status().ready).toBe(false)
    },
  )

  it('a version change clears the module and refolds it from the blocks', async () => {
    const b = await backend('sqlite')
    const store = await openStore(b)
    const alice = Signer.generate()
    const chain = values(alice)
    await store.putMany(fixtureChain(alice, chain, [{ n: 1 }, { n: 2 }]))
    const r1 = runnerFor(store, [valueProjection()])
    await r1.start()
    const before = await r1.dump()
    await r1.stop()
    // Rows a version-1 fold would never write: a rebuild must drop them.
    await store.sql().query("INSERT INTO fixture_chains (chain, blocks, total) VALUES ('junk', 1, 1)")
    const r2 = runnerFor(store, [valueProjection({}, 2)])
    await r2.start()
    expect(dumpDifferences(before, await r2.dump())).toEqual([])
    expect(await store.sql().query('SELECT version FROM state_projections')).toEqual([{ version: 2 }])
  })

  it('waitFor honours its signal; a chain no projection folds resolves at once', async () => {
    const store = await openStore(await backend('sqlite'))
    const r = runnerFor(store, [valueProjection()])
    await r.start()
    await r.waitFor('did:key:z/other', 100)
    const ac = new AbortController()
    const w = r.waitFor('did:key:z/values', 5, { signal: ac.signal })
    ac.abort()
    await expect(w).rejects.toMatchObject({ code: 'ABORTED' })
    const pending = r.waitFor('did:key:z/values', 5)
    await r.stop()
    await expect(pending).rejects.toMatchObject({ code: 'RUNNER_STOPPED' })
  })
})

/** Wait for a condition that the runner's own work makes true, turning the event loop meanwhile (bounded). */
async function vitestUntil(cond: () => boolean, turns = 10_000): Promise<void> {
  for (let i = 0; i < turns && !cond(); i++) await new Promise((r) => setImmediate(r))
  if (!cond()) throw new Error('condition not met')
}

/** Poll a condition on real time (the runner retries on the real clock here), failing after `ms`. */
async function pollUntil(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('ProjectionRunner: evidence and outages', () => {
  it('an equivocation on a folded chain is logged and counted; the block the store holds stays folded', async () => {
    const store = await openStore(await backend('sqlite'))
    const alice = Signer.generate()
    const chain = values(alice)
    const [b0, b1] = fixtureChain(alice, chain, [{ n: 1 }, { n: 2 }])
    const rival = fixtureBlock(alice, chain, 1, b0!.cid, { n: 500 })
    const metrics = createMetrics({ collectProcess: false })
    const r = runnerFor(store, [valueProjection()], { metrics })
    await r.start()
    await store.putMany([b0!, b1!])
    await r.waitFor(chain, 1)
    expect((await store.put(rival)).status).toBe('equivocation')
    expect((await metrics.projectionEquivocations.get()).values[0]?.value).toBe(1)
    expect((await r.dump()).fixture_chains).toEqual([{ chain, blocks: 2, total: 3 }])
    await r.reindex()
    expect((await r.dump()).fixture_chains).toEqual([{ chain, blocks: 2, total: 3 }])
  })

  it('two runners on one shared PostgreSQL database (nodes with other DIDs) fold every block once', async () => {
    const db = await createTestDatabase()
    cleanups.push(() => db.drop())
    const [s1, s2] = [new PostgresBlockStore({ url: db.url }), new PostgresBlockStore({ url: db.url })]
    await Promise.all([s1.open(), s2.open()])
    cleanups.push(() => s1.close())
    cleanups.push(() => s2.close())
    const signers = [Signer.generate(), Signer.generate()]
    const chains = signers.map((s) =>
      fixtureChain(
        s,
        values(s),
        Array.from({ length: 12 }, (_, i) => ({ n: 2 * i })),
      ),
    )
    // Each store tells its runner only of its own commits: refreshMs finds the other's.
    const options = { batchBlocks: 4, refreshMs: 20 }
    const [r1, r2] = [
      runnerFor(s1, [valueProjection()], { options }),
      runnerFor(s2, [valueProjection()], { options }),
    ]
    await Promise.all([r1.start(), r2.start()])
    // Both stores commit (the same blocks land once), both runners follow their own store's commits.
    for (const [i, blk] of interleave<Block>(chains, 7).entries()) await (i % 2 ? s1 : s2).put(blk)
    for (const s of signers) await Promise.all([r1.waitFor(values(s), 11), r2.waitFor(values(s), 11)])
    const d = await r1.dump()
    expect(d.fixture_totals).toEqual([{ k: 'all', blocks: 24, total: 2 * 2 * 66 }])
    expect(dumpDifferences(d, await r2.dump())).toEqual([])
  })

  it('a PostgreSQL outage in the middle of a fold faults the projection; it comes back by itself', async () => {
    const db = await createTestDatabase()
    cleanups.push(() => db.drop())
    const proxy = TcpProxy.forUrl(db.url)
    const port = await proxy.start()
    cleanups.push(() => proxy.stop())
    const store = new PostgresBlockStore({
      url: rewritePgUrl(db.url, { host: '127.0.0.1', port }),
      timeoutMs: 2_000,
      connectTimeoutMs: 1_000,
    })
    await store.open()
    cleanups.push(() => store.close())
    const alice = Signer.generate()
    const chain = values(alice)
    const blocks = fixtureChain(alice, chain, [{ n: 1 }, { n: 2 }, { n: 3 }])
    let cut = false
    const metrics = createMetrics({ collectProcess: false })
    const r = runnerFor(
      store,
      [
        valueProjection({
          // Cut the database off while block 1's fold transaction is open.
          beforeFold: async (ctx) => {
            if (ctx.block.seq === 1 && !cut) {
              cut = true
              await proxy.stop()
            }
          },
        }),
      ],
      { metrics, options: { batchBlocks: 1, retryMinMs: 20, retryMaxMs: 200 } },
    )
    await r.start()
    const fault = r.waitFor(chain, 2)
    await store.putMany(blocks)
    await expect(fault).rejects.toMatchObject({ code: 'PROJECTION_FAULTED' })
    expect(r.status()).toMatchObject({ ready: false })
    await proxy.start(port)
    // Retries (20 ms, doubling to 200 ms) until the database answers again.
    await pollUntil(() => r.status().ready, 20_000)
    await r.waitFor(chain, 2)
    expect((await r.dump()).fixture_chains).toEqual([{ chain, blocks: 3, total: 6 }])
    expect((await metrics.projectionFaults.get()).values[0]?.value).toBeGreaterThanOrEqual(1)
  })
})

describe('ProjectionRunner: settled (gossip relays after the fold)', () => {
  it('resolves once a gossiped block is folded, at once for blocks nobody folds, and never after stop', async () => {
    const store = await openStore(await backend('sqlite'))
    const alice = Signer.generate()
    const chain = values(alice)
    const [b0, b1] = fixtureChain(alice, chain, [{ n: 1 }, { n: 2 }])
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const hooks: FixtureHooks = { beforeFold: (ctx) => (ctx.block.seq === 1 ? gate : undefined) }
    const r = runnerFor(store, [valueProjection(hooks)], { options: { batchBlocks: 1 } })
    await r.start()
    await store.putMany([b0!], { source: 'gossip' })
    await r.waitFor(chain, 0)
    expect(await r.settled([b0!.cid.toString()], 10_000)).toBe('none')

    await store.putMany([b1!], { source: 'gossip' })
    let outcome: string | undefined
    const settled = r.settled([b1!.cid.toString()], 10_000).then((o) => {
      outcome = o
    })
    // The fold of block 1 is held by the gate: the wait goes on.
    await new Promise((resolve) => setImmediate(resolve))
    expect(outcome).toBeUndefined()
    release()
    await settled
    expect(outcome).toBe('folded')
    expect((await r.dump()).fixture_chains).toEqual([{ chain, blocks: 2, total: 3 }])

    // A block of a chain no projection folds, or one that came another way, does not wait.
    const other = fixtureBlock(alice, chainId(alice.did, 'other'), 0, null, { n: 1 })
    await store.putMany([other], { source: 'gossip' })
    expect(await r.settled([other.cid.toString()], 10_000)).toBe('none')
    await r.stop()
    expect(await r.settled([b1!.cid.toString()], 10_000)).toBe('none')
  })

  it('ends the wait when the fold faults', async () => {
    const store = await openStore(await backend('sqlite'))
    const clock = new ManualClock()
    const alice = Signer.generate()
    const chain = values(alice)
    const [b0] = fixtureChain(alice, chain, [{ n: 1 }])
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const hooks: FixtureHooks = {
      beforeFold: async () => {
        await gate
        throw new Error('disk on fire')
      },
    }
    const r = runnerFor(store, [valueProjection(hooks)], { clock, options: { retryMinMs: 60_000 } })
    await r.start()
    const fault = r.waitFor(chain, 0).catch((e: unknown) => e)
    await store.putMany([b0!], { source: 'gossip' })
    const settled = r.settled([b0!.cid.toString()], 10_000)
    release()
    expect(await fault).toMatchObject({ code: 'PROJECTION_FAULTED' })
    expect(await settled).toBe('folded')
  })

  it('ends the wait at its timeout (injected clock) when the fold takes longer', async () => {
    const store = await openStore(await backend('sqlite'))
    const clock = new ManualClock()
    const alice = Signer.generate()
    const chain = values(alice)
    const [b0] = fixtureChain(alice, chain, [{ n: 1 }])
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const r = runnerFor(store, [valueProjection({ beforeFold: () => gate })], { clock })
    await r.start()
    await store.putMany([b0!], { source: 'gossip' })
    let outcome: string | undefined
    const settled = r.settled([b0!.cid.toString()], 500).then((o) => {
      outcome = o
    })
    clock.advance(499)
    await new Promise((resolve) => setImmediate(resolve))
    expect(outcome).toBeUndefined()
    clock.advance(1)
    await settled
    expect(outcome).toBe('timeout')
    release()
    await r.waitFor(chain, 0)
  })
})
