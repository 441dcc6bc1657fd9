import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  type BlockStore,
  chainId,
  decodeSignedBlock,
  PostgresBlockStore,
  StoreHealthMonitor,
} from '../../src/dag/index.js'
import { Signer } from '../../src/identity/index.js'
import { createMetrics } from '../../src/observability/index.js'
import {
  createTestDatabase,
  rewritePgUrl,
  sql,
  TcpProxy,
  type TestDatabase,
  truncateAll,
} from '../helpers/pg.js'
import { blockStoreTests, chainOf, valueBlock } from './blockstore-suite.js'

// One database for this file (created fresh, dropped at the end); emptied after every test of the suite.
let db: TestDatabase
let admin: pg.Client
beforeAll(async () => {
  db = await createTestDatabase()
  admin = new pg.Client({ connectionString: db.url })
  await admin.connect()
})
afterAll(async () => {
  await admin?.end()
  await db?.drop()
})

blockStoreTests('postgres', {
  async setup() {
    const store = new PostgresBlockStore({ url: db.url, poolSize: 8, connectTimeoutMs: 5_000 })
    await store.open()
    return store
  },
  async teardown(store) {
    await store.close()
    await truncateAll(admin)
  },
})

async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('PostgresBlockStore', () => {
  const stores: BlockStore[] = []
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close()
    await truncateAll(admin)
  })

  function open(url = db.url, extra: Partial<ConstructorParameters<typeof PostgresBlockStore>[0]> = {}) {
    const store = new PostgresBlockStore({ url, connectTimeoutMs: 2_000, ...extra })
    stores.push(store)
    return store
  }

  it('fails fast to open an unreachable server, naming host and database but not the password', async () => {
    const store = open('postgres://icn:s3cret-pw@127.0.0.1:1/blocks', { connectTimeoutMs: 1_000 })
    const started = Date.now()
    const err = await store.open().then(
      () => new Error('expected a failure'),
      (e: unknown) => e as Error,
    )
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(err).toMatchObject({ code: 'STORE_OPEN_FAILED' })
    expect(err.message).toContain('127.0.0.1:1/blocks')
    expect(err.message).not.toContain('s3cret-pw')
    await expect(store.ping()).rejects.toMatchObject({ code: 'STORE_CLOSED' })
  })

  it('fails to open a missing database with STORE_OPEN_FAILED', async () => {
    const url = rewritePgUrl(db.url, { database: 'icn_no_such_db' }).replace(
      '//postgres@',
      '//postgres:pw-xyz@',
    )
    const err = await open(url)
      .open()
      .then(
        () => new Error('expected a failure'),
        (e: unknown) => e as Error,
      )
    expect(err).toMatchObject({ code: 'STORE_OPEN_FAILED' })
    expect(err.message).toMatch(/icn_no_such_db/)
    expect(err.message).not.toContain('pw-xyz')
  })

  it('migrates once when several nodes open a fresh database at the same time', async () => {
    const fresh = await createTestDatabase()
    try {
      const many = Array.from({ length: 4 }, () => new PostgresBlockStore({ url: fresh.url }))
      await Promise.all(many.map((s) => s.open()))
      const res = await sql(fresh.url, 'SELECT version FROM schema_migrations')
      expect(res.rows).toEqual([{ version: 1 }])
      await Promise.all(many.map((s) => s.close()))
    } finally {
      await fresh.drop()
    }
  })

  it('refuses a database whose schema is newer than the code', async () => {
    const fresh = await createTestDatabase()
    try {
      const first = new PostgresBlockStore({ url: fresh.url })
      await first.open()
      await first.close()
      await sql(fresh.url, "INSERT INTO schema_migrations VALUES (999, 'from the future', 0)")
      const err = await new PostgresBlockStore({ url: fresh.url }).open().then(
        () => new Error('expected a failure'),
        (e: unknown) => e as Error,
      )
      expect(err).toMatchObject({ code: 'STORE_OPEN_FAILED' })
      expect(err.message).toMatch(/newer/)
    } finally {
      await fresh.drop()
    }
  })

  it('rolls back a put whose signal fires while its transaction runs', async () => {
    const store = open()
    await store.open()
    const signer = Signer.generate()
    const blocks = chainOf(signer, chainId(signer.did, 'main'), 3)
    const ac = new AbortController()
    const pending = store.putMany(blocks, { signal: ac.signal })
    ac.abort() // validation is done and the transaction under way; COMMIT must not happen
    await expect(pending).rejects.toMatchObject({ code: 'ABORTED' })
    expect((await store.stats()).blocks).toBe(0)
    expect(await store.chainHeads()).toEqual([])
    expect((await store.putMany(blocks)).every((r) => r.status === 'stored')).toBe(true)
  })

  it('two instances on one database writing one chain keep it intact', async () => {
    const a = open(db.url, { poolSize: 4 })
    const b = open(db.url, { poolSize: 4 })
    await Promise.all([a.open(), b.open()])
    const signer = Signer.generate()
    const chain = chainId(signer.did, 'main')
    const [b0] = chainOf(signer, chain, 1)
    await a.put(b0!)
    const rivals = Array.from({ length: 12 }, (_, i) => valueBlock(signer, chain, 1, b0!.cid, `rival ${i}`))
    const res = await Promise.all(rivals.map((r, i) => (i % 2 ? a : b).put(r)))
    expect(res.filter((r) => r.status === 'stored')).toHaveLength(1)
    expect(res.filter((r) => r.status === 'equivocation')).toHaveLength(11)
    const winner = res.find((r) => r.status === 'stored')!.cid

    const forks = Array.from({ length: 12 }, (_, i) =>
      chainOf(signer, chain, 1 + (i % 4), 2, winner, `fork ${i}`),
    )
    const settled = await Promise.allSettled(forks.map((f, i) => (i % 2 ? a : b).putMany(f)))
    for (const s of settled)
      if (s.status === 'rejected') expect((s.reason as { code?: string }).code).toBe('PREV_MISMATCH')
    const firsts = settled.filter((s) => s.status === 'fulfilled' && s.value[0]!.status === 'stored')
    expect(firsts).toHaveLength(1)

    for (const store of [a, b]) {
      const head = (await store.chainHead(chain))!
      for (let seq = head.seq; seq > 0; seq--) {
        const block = decodeSignedBlock(await store.get((await store.chainEntry(chain, seq))!))
        expect(block.prev?.equals((await store.chainEntry(chain, seq - 1))!)).toBe(true)
      }
      expect((await store.chainEntry(chain, head.seq))?.equals(head.cid)).toBe(true)
      expect(await store.chainEntry(chain, head.seq + 1)).toBeUndefined()
    }
    expect(await a.evidence()).toEqual(await b.evidence())
  })

  it('turns an outage into STORE_UNAVAILABLE, and recovers by itself when the database returns', async () => {
    const proxy = TcpProxy.forUrl(db.url)
    const port = await proxy.start()
    const metrics = createMetrics({ collectProcess: false })
    const store = open(rewritePgUrl(db.url, { host: '127.0.0.1', port }), {
      poolSize: 2,
      connectTimeoutMs: 1_000,
    })
    const monitor = new StoreHealthMonitor(
      { intervalMs: 50, initialBackoffMs: 20, maxBackoffMs: 100 },
      { store, metrics },
    )
    try {
      await store.open()
      const signer = Signer.generate()
      const chain = chainId(signer.did, 'main')
      const [b0, b1, b2] = chainOf(signer, chain, 3)
      await store.put(b0!)
      monitor.start()
      await until(() => monitor.status().ready)

      await proxy.stop()
      const err = await store.put(b1!).then(
        () => new Error('expected a failure'),
        (e: unknown) => e as Error,
      )
      expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE' })
      expect(err.message).toMatch(/unreachable/)
      monitor.reportFailure(err)
      expect(monitor.status().ready).toBe(false)
      expect((await metrics.storeUp.get()).values[0]?.value).toBe(0)
      await expect(store.get(b0!.cid)).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' })
      await expect(store.ping()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' })
      // bad input is still reported as bad input, not as an outage
      await expect(store.put({ cid: b1!.cid, bytes: b2!.bytes })).rejects.toMatchObject({
        code: 'CID_MISMATCH',
      })

      await proxy.start(port)
      await until(() => monitor.status().ready)
      expect((await metrics.storeUp.get()).values[0]?.value).toBe(1)
      expect((await store.putMany([b1!, b2!])).map((r) => r.status)).toEqual(['stored', 'stored'])
      expect((await store.chainHead(chain))?.seq).toBe(2)
    } finally {
      monitor.stop()
      await proxy.stop()
    }
  })
})
