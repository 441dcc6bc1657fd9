import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiServer } from '../../../src/api/index.js'
import { dagHandlers } from '../../../src/dag/api.js'
import { ChainWriter, SqliteBlockStore } from '../../../src/dag/index.js'
import { economicsHandlers } from '../../../src/economics/api.js'
import { Signer } from '../../../src/identity/index.js'
import { networkHandlers } from '../../../src/network/api.js'
import { nodeHandlers } from '../../../src/node/api.js'
import { webHandlers } from '../../../src/node/web.js'
import { createMetrics, EventBus, Readiness, silentLogger } from '../../../src/observability/index.js'

const API_KEY = 'test-api-key-0123456789'

// The API compiles its route schemas on first use (lazy) by default. These tests hold that against fastify's
// usual eager compilation: every schema compiles, and both answer every request alike.
let dir: string
let store: SqliteBlockStore
const apps: Record<'lazy' | 'eager', FastifyInstance> = {} as never

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-schemas-'))
  store = new SqliteBlockStore({ path: join(dir, 'store.sqlite') }, {})
  await store.open()
  const signer = Signer.generate()
  const writer = new ChainWriter({ name: 'node' }, { store, signer, logger: silentLogger() })
  for (const mode of ['lazy', 'eager'] as const) {
    const readiness = new Readiness()
    readiness.register('store', () => ({ ready: true }))
    const metrics = createMetrics()
    apps[mode] = await createApiServer(
      { metrics, logger: silentLogger(), apiKey: API_KEY },
      [
        nodeHandlers({
          did: signer.did,
          store,
          writer,
          readiness,
          metrics,
          startedAt: new Date(0),
          events: new EventBus(),
        }),
        networkHandlers({}),
        economicsHandlers({ ledger: () => undefined }),
        dagHandlers({ store, writer, metrics, gcRoots: async () => [] }),
        webHandlers(),
      ],
      { compileSchemas: mode },
    )
    // Eager: fastify compiles every validator and serializer here, and throws if one does not compile.
    await apps[mode].ready()
  }
})

afterAll(async () => {
  for (const app of Object.values(apps)) await app?.close()
  await store?.close()
  await rm(dir, { recursive: true, force: true })
})

const auth = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }
const requests: { name: string; method: 'GET' | 'POST'; url: string; body?: string; headers?: object }[] = [
  { name: 'a value', method: 'POST', url: '/v1/dag/blocks', body: '{"value":{"a":[1,2,3]}}', headers: auth },
  {
    name: 'a body with an extra key',
    method: 'POST',
    url: '/v1/dag/blocks',
    body: '{"value":1,"x":2}',
    headers: auth,
  },
  { name: 'a body without its key', method: 'POST', url: '/v1/dag/blocks', body: '{}', headers: auth },
  { name: 'a body that is not an object', method: 'POST', url: '/v1/dag/blocks', body: '[1]', headers: auth },
  { name: 'a query value out of its enum', method: 'GET', url: '/v1/dag/blocks/bafyx?format=xml' },
  { name: 'an invalid CID', method: 'GET', url: '/v1/dag/blocks/not-a-cid?format=json' },
  { name: 'an unknown route', method: 'GET', url: '/v1/nothing' },
  { name: 'the node', method: 'GET', url: '/v1/node' },
  { name: 'readiness', method: 'GET', url: '/ready' },
  { name: 'the stats', method: 'GET', url: '/v1/dag/stats' },
  { name: 'the chains', method: 'GET', url: '/v1/dag/chains' },
]

/** What a reply says, less what differs by nature between two servers (request ids, times, fresh CIDs). */
function comparable(status: number, body: string): unknown {
  const json = JSON.parse(body) as Record<string, unknown>
  delete json.requestId
  delete json.uptimeSeconds
  return { status, keys: Object.keys(json).sort(), code: json.code, message: json.message }
}

describe('lazily compiled route schemas', () => {
  it.each(requests)('answer $name as eagerly compiled ones do', async (r) => {
    const [lazy, eager] = await Promise.all(
      (['lazy', 'eager'] as const).map((m) =>
        apps[m].inject({ method: r.method, url: r.url, payload: r.body, headers: r.headers as never }),
      ),
    )
    expect(comparable(lazy!.statusCode, lazy!.body)).toEqual(comparable(eager!.statusCode, eager!.body))
  })

  it('produce the same OpenAPI document', async () => {
    const [lazy, eager] = await Promise.all(
      (['lazy', 'eager'] as const).map((m) => apps[m].inject({ method: 'GET', url: '/openapi.json' })),
    )
    expect(lazy!.statusCode).toBe(200)
    expect(lazy!.json()).toEqual(eager!.json())
  })
})
