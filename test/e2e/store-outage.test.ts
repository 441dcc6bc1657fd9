/**
 * A node on a PostgreSQL database that goes silent (connections open, nothing delivered): writes answer 503
 * STORE_UNAVAILABLE within the store's deadline, nothing is half-written, and once traffic flows again the
 * first successful write makes /ready true at once and continues the chain where it was.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Signer } from '../../src/identity/index.js'
import { defaultOptions, IcnNode } from '../../src/node/index.js'
import { silentLogger } from '../../src/observability/index.js'
import { createTestDatabase, rewritePgUrl, TcpProxy, type TestDatabase } from '../helpers/pg.js'

const API_KEY = 'test-api-key-0123456789'
let dir: string
let db: TestDatabase
let proxy: TcpProxy
let node: IcnNode

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-outage-'))
  db = await createTestDatabase()
  proxy = TcpProxy.forUrl(db.url)
  const port = await proxy.start()
  node = await IcnNode.create(
    {
      ...defaultOptions,
      dataDir: dir,
      apiListen: '127.0.0.1:0',
      store: 'postgres',
      pgUrl: rewritePgUrl(db.url, { host: '127.0.0.1', port }),
      storeTimeoutMs: 300,
    },
    { signer: Signer.generate(), apiKey: API_KEY, logger: silentLogger() },
  )
  await node.start()
})

afterAll(async () => {
  await proxy?.stop()
  await node?.stop()
  await db?.drop()
  await rm(dir, { recursive: true, force: true })
})

async function post(value: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${node.apiUrl}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value }),
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

async function ready(): Promise<number> {
  return (await fetch(`${node.apiUrl}/ready`)).status
}

it('answers 503 STORE_UNAVAILABLE while the database is silent, and recovers with the chain intact', async () => {
  expect((await post({ n: 0 })).status).toBe(201)
  expect(await ready()).toBe(200)

  proxy.blackhole()
  const writes = await Promise.all([1, 2, 3].map((n) => post({ n })))
  for (const w of writes) {
    expect(w.status).toBe(503)
    expect(w.body).toMatchObject({ code: 'STORE_UNAVAILABLE', requestId: expect.any(String) })
  }
  expect(writes[0]!.body.message).toMatch(/did not answer within 300 ms/)
  expect(await ready()).toBe(503)

  proxy.restore()
  let ok: { status: number; body: Record<string, unknown> } | undefined
  for (let tries = 0; !ok; tries++) {
    expect(tries).toBeLessThan(50)
    const w = await post({ n: 'after' })
    if (w.status === 201) ok = w
    else expect(w.body).toMatchObject({ code: 'STORE_UNAVAILABLE' }) // a pooled connection found dead
  }
  // the write succeeded, so the store counts as healthy now, not after the monitor's next retry
  expect(await ready()).toBe(200)
  expect(ok.body.seq).toBe(1)
  const stats = await fetch(`${node.apiUrl}/v1/dag/stats`, {
    headers: { authorization: `Bearer ${API_KEY}` },
  })
  expect(await stats.json()).toMatchObject({ blocks: 1 + 1, evidence: 0 })
})
