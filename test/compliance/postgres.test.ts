import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  type BlockStore,
  ChainWriter,
  chainId,
  decodeSignedBlock,
  type PostgresStoreOptions,
  StoreHealthMonitor,
} from '../../src/dag/index.js'
import { PostgresBlockStore } from '../../src/dag/postgres.js'
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
  async setup(components) {
    const store = new PostgresBlockStore({ url: db.url, poolSize: 8, connectTimeoutMs: 5_000 }, components)
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

  it('fails to open an unreachable server, naming host and database but not the password', async () => {
    const store = open('postgres://icn:s3cret-pw@127.0.0.1:1/blocks', { connectTimeoutMs: 1_000 })
    const err = await store.open().then(
      () => new Error('expected a failure'),
      (e: unknown) => e as Error,
    )
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

/** The code a promise rejects with, or 'ok'. */
async function outcome(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? String(e),
  )
}

/** End the lock connections' sessions server-side, and wait until their backends are gone (and their locks). */
async function endLockSessions(): Promise<void> {
  const killed = await admin.query(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = 'icn-lock'`,
  )
  expect(killed.rows).toEqual([{ ok: true }])
  const left = async (): Promise<number> =>
    (
      await admin.query(
        `SELECT (SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'icn-lock')::int
              + (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))::int AS n`,
      )
    ).rows[0].n as number
  for (let tries = 0; (await left()) > 0; tries++) {
    expect(tries).toBeLessThan(500)
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('PostgresBlockStore: one node identity per database', () => {
  const stores: BlockStore[] = []
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close()
    await truncateAll(admin)
  })

  function open(
    lockKey: string,
    url = db.url,
    extra: Partial<PostgresStoreOptions> = {},
  ): PostgresBlockStore {
    const store = new PostgresBlockStore({ url, connectTimeoutMs: 2_000, lockKey, ...extra })
    stores.push(store)
    return store
  }

  it('a second store for the same identity fails STORE_LOCKED, the first keeps working; after close one opens', async () => {
    const signer = Signer.generate()
    const chain = chainId(signer.did, 'node')
    const [b0, b1, b2] = chainOf(signer, chain, 3)
    const first = open(signer.did)
    await first.open()
    await first.put(b0!)

    const second = open(signer.did)
    const err = await second.open().then(
      () => new Error('expected a failure'),
      (e: unknown) => e as Error,
    )
    expect(err).toMatchObject({ code: 'STORE_LOCKED' })
    expect(err.message).toContain(signer.did)
    expect(err.message).toMatch(/another icn node/)
    await expect(second.ping()).rejects.toMatchObject({ code: 'STORE_CLOSED' })

    // the first keeps working, and another identity may share the database
    expect((await first.put(b1!)).status).toBe('stored')
    const other = open(Signer.generate().did)
    await other.open()
    await other.ping()

    await first.close()
    const third = open(signer.did)
    await third.open()
    expect((await third.put(b2!)).status).toBe('stored')
    expect((await third.chainHead(chain))?.seq).toBe(2)
  })

  it('frees the lock by the time close() resolves, even far from the server: the identity opens again at once', async () => {
    const held = async (): Promise<number> =>
      (
        await admin.query(
          `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        )
      ).rows[0].n as number
    // A store 150 ms from its server: a close() that only starts ending the session returns long before the
    // server hears of it.
    const proxy = TcpProxy.forUrl(db.url)
    const port = await proxy.start()
    try {
      const signer = Signer.generate()
      const store = open(signer.did, rewritePgUrl(db.url, { host: '127.0.0.1', port }))
      await store.open()
      expect(await held()).toBe(1)
      proxy.delay(150)
      await store.close()
      stores.splice(stores.indexOf(store), 1)
      // Not a moment later: a node restarted by its supervisor takes the lock as soon as the old one stopped.
      expect(await held()).toBe(0)
      const again = open(signer.did)
      await again.open()
      await again.close()
      stores.splice(stores.indexOf(again), 1)
    } finally {
      await proxy.stop()
    }
    // The proxied sessions end when their backends notice: wait, so that the next test finds none of them.
    for (let tries = 0; ; tries++) {
      const n = (
        await admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'icn-lock'`,
        )
      ).rows[0].n as number
      if (n === 0) break
      expect(tries).toBeLessThan(500)
      await new Promise((r) => setTimeout(r, 10))
    }
  })

  it('stops writing when its lock connection dies, and takes the lock again once free', async () => {
    const signer = Signer.generate()
    const chain = chainId(signer.did, 'node')
    const [b0, b1, b2] = chainOf(signer, chain, 3)
    const a = open(signer.did)
    await a.open()
    await a.put(b0!)
    // the server ends the lock's session (as it does when the network drops it): the lock is free
    await endLockSessions()
    const b = open(signer.did)
    await b.open() // another process with this identity takes it

    // a must not write as if it still held the lock, whether or not it has heard of the loss yet
    expect(['STORE_LOCKED', 'STORE_UNAVAILABLE']).toContain(await outcome(a.put(b1!)))
    expect(await outcome(a.put(b1!))).toBe('STORE_LOCKED')
    expect(await outcome(a.pin(b0!.cid))).toBe('STORE_LOCKED')
    expect(await outcome(a.ping())).toBe('STORE_LOCKED')
    expect(await b.has(b1!.cid)).toBe(false)
    expect((await b.put(b1!)).status).toBe('stored')

    // once b has gone, a takes the lock again by itself and writes
    await b.close()
    stores.splice(stores.indexOf(b), 1)
    expect((await a.put(b2!)).status).toBe('stored')
    expect((await a.chainHead(chain))?.seq).toBe(2)
  })

  it('a write refuses, inside its transaction, when the lock connection died without the client hearing', async () => {
    const signer = Signer.generate()
    const chain = chainId(signer.did, 'node')
    const [b0, b1] = chainOf(signer, chain, 2)
    const a = open(signer.did)
    await a.open()
    await a.put(b0!)
    // Deafen the lock connection (as a network that drops packets does: no FIN, no error), then end its session.
    const lock = (a as unknown as { lock: { client: pg.Client } }).lock.client
    lock.removeAllListeners('end')
    lock.removeAllListeners('error')
    lock.on('error', () => {})
    await endLockSessions()

    const err = await a.put(b1!).then(
      () => new Error('expected a failure'),
      (e: unknown) => e as Error,
    )
    expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE' })
    expect(err.message).toMatch(/lock is no longer held/)
    expect(await a.has(b1!.cid)).toBe(false)
    // the loss is now known: the next write takes the lock again (nobody else has it) and goes through
    expect((await a.put(b1!)).status).toBe('stored')
  })
  it('a sql() transaction refuses, in its first round trip, when the lock connection died unheard', async () => {
    const signer = Signer.generate()
    const a = open(signer.did)
    await a.open()
    const sqlAccess = a.sql()
    await sqlAccess.exec('CREATE TABLE IF NOT EXISTS sqltest_lock (id BIGINT PRIMARY KEY)')
    const lock = (a as unknown as { lock: { client: pg.Client } }).lock.client
    lock.removeAllListeners('end')
    lock.removeAllListeners('error')
    lock.on('error', () => {})
    await endLockSessions()
    let ran = false
    const err = await sqlAccess
      .transaction(async (tx) => {
        ran = true
        await tx.query('INSERT INTO sqltest_lock (id) VALUES ($1)', [1])
      })
      .then(
        () => new Error('expected a failure'),
        (e: unknown) => e as Error,
      )
    expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE' })
    expect(err.message).toMatch(/lock is no longer held/)
    expect(ran).toBe(false)
    // The loss is known now: the next transaction takes the lock again and commits.
    await sqlAccess.transaction(async (tx) => {
      await tx.query('INSERT INTO sqltest_lock (id) VALUES ($1)', [1])
    })
    expect(await sqlAccess.query('SELECT id FROM sqltest_lock')).toEqual([{ id: 1 }])
  })
})

describe('PostgresBlockStore: a database that goes silent', () => {
  it('fails every operation within its deadline, commits nothing half-way, and the writer carries on right', async () => {
    const proxy = TcpProxy.forUrl(db.url)
    const port = await proxy.start()
    const signer = Signer.generate()
    const store = new PostgresBlockStore({
      url: rewritePgUrl(db.url, { host: '127.0.0.1', port }),
      poolSize: 2,
      timeoutMs: 300,
      lockKey: signer.did,
    })
    const writer = new ChainWriter({ name: 'node' }, { store, signer })
    try {
      await store.open()
      expect((await writer.appendValue('before')).seq).toBe(0)

      proxy.blackhole() // connections stay open; nothing gets through
      const err = await writer.appendValue('lost').then(
        () => new Error('expected a failure'),
        (e: unknown) => e as Error,
      )
      expect(err).toMatchObject({ code: 'STORE_UNAVAILABLE' })
      expect(err.message).toMatch(/did not answer within 300 ms/)
      expect(proxy.dropped).toBeGreaterThan(0)
      // queued writes fail as well (at once: the one ahead of them found the store unavailable)
      const queued = await Promise.all(['q1', 'q2', 'q3'].map((v) => outcome(writer.appendValue(v))))
      expect(queued).toEqual(['STORE_UNAVAILABLE', 'STORE_UNAVAILABLE', 'STORE_UNAVAILABLE'])
      for (const op of [
        store.get(chainOf(signer, chainId(signer.did, 'x'), 1)[0]!.cid),
        store.stats(),
        store.ping(),
        store.gc(),
      ])
        expect(await outcome(op)).toBe('STORE_UNAVAILABLE')
      // nothing of the lost writes is in the database (read past the proxy)
      const chain = chainId(signer.did, 'node')
      const counted = await admin.query(
        'SELECT (SELECT count(*) FROM blocks)::int AS blocks, (SELECT max(seq) FROM chain_entries WHERE chain = $1)::int AS seq',
        [chain],
      )
      expect(counted.rows).toEqual([{ blocks: 1, seq: 0 }])

      proxy.restore() // traffic flows again; the connections that lost bytes are closed
      let next: Awaited<ReturnType<ChainWriter['appendValue']>> | undefined
      for (let tries = 0; !next; tries++) {
        expect(tries).toBeLessThan(50)
        next = await writer.appendValue('after').catch((e: { code?: string }) => {
          expect(e.code).toBe('STORE_UNAVAILABLE') // a pooled connection found dead on its first use
          return undefined
        })
      }
      expect(next.seq).toBe(1) // the writer read its head again: no fork, no gap
      const head = (await store.chainHead(chain))!
      expect(head.seq).toBe(1)
      expect(head.cid.equals(next.cid)).toBe(true)
      expect(await store.evidence()).toEqual([])
      const b1 = decodeSignedBlock(await store.get(next.cid))
      expect(b1.prev?.equals((await store.chainEntry(chain, 0))!)).toBe(true)
      expect((await store.stats()).blocks).toBe(2)
    } finally {
      await proxy.stop()
      await store.close()
    }
  })
})
