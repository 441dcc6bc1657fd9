import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Value } from 'typebox/value'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient, ApiError, type RouteDef, type RouteId, routes } from '../../src/api/index.js'
import { recordToJson, signRecord } from '../../src/economics/index.js'
import { createGenesis, writeGenesisFile } from '../../src/federation/index.js'
import { Signer } from '../../src/identity/index.js'
import { defaultOptions, IcnNode } from '../../src/node/index.js'
import { silentLogger } from '../../src/observability/index.js'

const API_KEY = 'test-api-key-0123456789'

let dir: string
let node: IcnNode
let client: ApiClient
let anon: ApiClient
let signer: Signer

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-api-'))
  // A federation of one, so the federation and peer routes have something to show.
  signer = Signer.generate()
  const genesis = join(dir, 'genesis.car')
  await writeGenesisFile(
    genesis,
    createGenesis(signer, { name: 'api-test', members: [signer.did], nodes: [signer.did] }),
  )
  node = await IcnNode.create(
    {
      ...defaultOptions,
      dataDir: dir,
      apiListen: '127.0.0.1:0',
      genesis,
      p2pListen: ['/ip4/127.0.0.1/tcp/0'],
    },
    { signer, apiKey: API_KEY, logger: silentLogger() },
  )
  await node.start()
  client = new ApiClient({ baseUrl: node.apiUrl, apiKey: API_KEY })
  anon = new ApiClient({ baseUrl: node.apiUrl })
})

afterAll(async () => {
  await node?.stop()
  await rm(dir, { recursive: true, force: true })
})

async function expectApiError(p: Promise<unknown>, status: number, code: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(ApiError)
  expect((err as ApiError).status).toBe(status)
  expect((err as ApiError).code).toBe(code)
}

async function raw(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${node.apiUrl}${path}`, init)
}

describe('every route, real client against real server', () => {
  it('answers each route with a body matching its declared schema', async () => {
    const first = await client.call(routes.putValue, { body: { value: { hello: 'world' } } })
    const cid = first.cid
    const car = new Uint8Array(await (await client.fetch(routes.exportCar)).arrayBuffer())
    // One call per route; a route added without an entry here fails the test.
    const calls: Record<RouteId, () => Promise<unknown>> = {
      health: () => client.call(routes.health),
      ready: () => client.call(routes.ready),
      metrics: async () => (await client.fetch(routes.metrics)).text(),
      openapi: () => client.call(routes.openapi),
      getNode: () => client.call(routes.getNode),
      getFederation: () => client.call(routes.getFederation),
      getPeers: () => client.call(routes.getPeers),
      events: async () => {
        const ctl = new AbortController()
        const res = await client.fetch(routes.events, { signal: ctl.signal })
        const reader = res.body!.getReader()
        const first = await reader.read()
        ctl.abort()
        return new TextDecoder().decode(first.value)
      },
      putValue: () => client.call(routes.putValue, { body: { value: [1, 'two', { three: 3 }, null, true] } }),
      getBlock: () => client.call(routes.getBlock, { params: { cid }, query: { format: 'json' } }),
      getValue: () => client.call(routes.getValue, { params: { cid } }),
      exportCar: async () => new Uint8Array(await (await client.fetch(routes.exportCar)).arrayBuffer()),
      importCar: () => client.call(routes.importCar, { rawBody: car }),
      verify: () => client.call(routes.verify),
      gc: () => client.call(routes.gc),
      listPins: () => client.call(routes.listPins),
      addPin: () => client.call(routes.addPin, { params: { cid } }),
      removePin: () => client.call(routes.removePin, { params: { cid } }),
      chains: () => client.call(routes.chains),
      evidence: () => client.call(routes.evidence),
      stats: () => client.call(routes.stats),
      listMembers: () => anon.call(routes.listMembers),
      getMember: () => anon.call(routes.getMember, { params: { did: node.did }, query: {} }),
      listAccounts: () => anon.call(routes.listAccounts, { query: { at: new Date().toISOString() } }),
      getAccount: () => anon.call(routes.getAccount, { params: { did: 'treasury' }, query: {} }),
      webPage: async () => (await anon.fetch(routes.webPage)).text(),
      webAsset: async () => (await anon.fetch(routes.webAsset, { params: { file: 'app.js' } })).text(),
      postTransfer: () =>
        anon.call(routes.postTransfer, {
          body: recordToJson(
            signRecord(signer, {
              kind: 'transfer',
              federation: node.federation!.id,
              member: signer.did,
              to: 'treasury',
              amount: 5,
              nonce: 'api-test-nonce-1',
              expires: Date.now() + 60_000,
            }),
          ) as never,
        }),
    }
    expect(Object.keys(calls).sort()).toEqual(Object.keys(routes).sort())
    for (const [id, call] of Object.entries(calls)) {
      const def = routes[id as RouteId] as RouteDef
      const out = await call()
      if (def.responseContentType) {
        expect(out, id).toBeTruthy()
        continue
      }
      const errors = [...Value.Errors(def.response, out)]
      expect(errors, `${id}: ${JSON.stringify(errors[0])}`).toEqual([])
    }
  })

  it('documents every route in /openapi.json', async () => {
    const doc = (await client.call(routes.openapi)) as { paths: Record<string, Record<string, unknown>> }
    for (const def of Object.values(routes) as RouteDef[]) {
      if (def.hidden) continue
      const path = def.url.replace(/:([A-Za-z]+)/g, '{$1}')
      expect(doc.paths[path]?.[def.method.toLowerCase()], `${def.method} ${def.url}`).toBeDefined()
    }
  })
})

describe('values and blocks', () => {
  it('stores a value on the node chain and reads it back, as JSON and as DAG-CBOR bytes', async () => {
    const before = await client.call(routes.getNode)
    const r = await client.call(routes.putValue, { body: { value: { n: 42, s: 'x' } } })
    expect(r.seq).toBe((before.head?.seq ?? -1) + 1)
    const v = await client.call(routes.getValue, { params: { cid: r.cid } })
    expect(v.value).toEqual({ n: 42, s: 'x' })
    expect(v.author).toBe(node.did)
    const res = await raw(`/v1/dag/blocks/${r.cid}`)
    expect(res.headers.get('content-type')).toBe('application/vnd.ipld.dag-cbor')
    const bytes = new Uint8Array(await res.arrayBuffer())
    const stored = await node.store.get((await node.store.chainHead(node.writer.chain))!.cid)
    expect(Buffer.from(bytes).equals(Buffer.from(stored))).toBe(true)
    const asJson = await raw(`/v1/dag/blocks/${r.cid}`, { headers: { accept: 'application/json' } })
    expect(((await asJson.json()) as { kind: string }).kind).toBe('signed')
  })

  it('chunks a large value and reassembles it', async () => {
    const value = Array.from({ length: 60_000 }, (_, i) => ({ i, pad: 'p'.repeat(20) }))
    const r = await client.call(routes.putValue, { body: { value } })
    expect(r.chunks).toBeGreaterThan(1)
    const v = await client.call(routes.getValue, { params: { cid: r.cid } })
    expect(v.value).toEqual(value)
  })

  it('tags every reply with a request id, taken from x-request-id when given', async () => {
    const res = await raw('/v1/node', { headers: { 'x-request-id': 'abc-123' } })
    expect(res.headers.get('x-request-id')).toBe('abc-123')
    const err = await raw('/v1/dag/blocks/nope')
    expect(((await err.json()) as { requestId: string }).requestId).toBe(err.headers.get('x-request-id'))
  })

  it('counts requests by route template in /metrics', async () => {
    const text = await (await raw('/metrics')).text()
    expect(text).toMatch(
      /icn_http_requests_total\{method="POST",route="\/v1\/dag\/blocks",status="201"\} \d+/,
    )
    expect(text).toMatch(/icn_dag_blocks_stored_total\{kind="signed",source="http"\} \d+/)
    expect(text).toContain('icn_store_operation_duration_seconds_bucket')
    expect(text).toContain('process_cpu_user_seconds_total')
  })
})

describe('bad input is refused and changes nothing', () => {
  async function unchanged(fn: () => Promise<void>): Promise<void> {
    const before = await client.call(routes.stats)
    await fn()
    expect(await client.call(routes.stats)).toEqual(before)
  }

  it('401 without or with a wrong API key', async () => {
    await unchanged(async () => {
      await expectApiError(anon.call(routes.putValue, { body: { value: 1 } }), 401, 'UNAUTHORIZED')
      const wrong = new ApiClient({ baseUrl: node.apiUrl, apiKey: 'wrong' })
      await expectApiError(wrong.call(routes.putValue, { body: { value: 1 } }), 401, 'UNAUTHORIZED')
      await expectApiError(wrong.call(routes.gc), 401, 'UNAUTHORIZED')
      await expectApiError(
        wrong.call(routes.importCar, { rawBody: new Uint8Array([1, 2, 3]) }),
        401,
        'UNAUTHORIZED',
      )
    })
  })

  it('400 with { code, message } for malformed bodies', async () => {
    const auth = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }
    await unchanged(async () => {
      for (const body of [
        '{"value":',
        'null',
        '[]',
        '{"x":1}',
        '{"value":1,"extra":2}',
        '{"__proto__":{"a":1},"value":1}',
      ]) {
        const res = await raw('/v1/dag/blocks', { method: 'POST', headers: auth, body })
        expect(res.status, body).toBe(400)
        const e = (await res.json()) as { code: string; message: string }
        expect(typeof e.code).toBe('string')
        expect(e.message.length).toBeGreaterThan(0)
      }
      const res = await raw('/v1/dag/blocks', {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/xml' },
        body: '<hi/>',
      })
      expect(res.status).toBe(415)
    })
  })

  it('413 for an oversized body, and the node stays up', async () => {
    await unchanged(async () => {
      const big = JSON.stringify({ value: 'x'.repeat(40 * 1024 * 1024) })
      const res = await raw('/v1/dag/blocks', {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: big,
      })
      expect(res.status).toBe(413)
      expect(((await res.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE')
    })
    expect((await client.call(routes.health)).status).toBe('ok')
  })

  it('400 INVALID_CID and 404 NOT_FOUND for block reads', async () => {
    await expectApiError(client.call(routes.getBlock, { params: { cid: 'not-a-cid' } }), 400, 'INVALID_CID')
    await expectApiError(
      client.call(routes.getValue, {
        params: { cid: 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy' },
      }),
      404,
      'NOT_FOUND',
    )
  })

  it('400 INVALID_CAR for a corrupt CAR, importing nothing', async () => {
    const car = new Uint8Array(await (await client.fetch(routes.exportCar)).arrayBuffer())
    await unchanged(async () => {
      await expectApiError(
        client.call(routes.importCar, { rawBody: car.subarray(0, car.length - 7) }),
        400,
        'INVALID_CAR',
      )
      await expectApiError(
        client.call(routes.importCar, { rawBody: new Uint8Array(64).fill(7) }),
        400,
        'INVALID_CAR',
      )
    })
  })

  it('404 ROUTE_NOT_FOUND for unknown routes', async () => {
    const res = await raw('/v1/nothing')
    expect(res.status).toBe(404)
    expect(((await res.json()) as { code: string }).code).toBe('ROUTE_NOT_FOUND')
  })
})

describe('lifecycle', () => {
  it('start and stop are idempotent; stop before start is fine', async () => {
    const d = await mkdtemp(join(tmpdir(), 'icn-life-'))
    try {
      const n = await IcnNode.create(
        { ...defaultOptions, dataDir: d, apiListen: '127.0.0.1:0' },
        { signer: Signer.generate(), apiKey: API_KEY, logger: silentLogger() },
      )
      await n.stop()
      expect(n.status).toBe('stopped')
      const m = await IcnNode.create(
        { ...defaultOptions, dataDir: d, apiListen: '127.0.0.1:0' },
        { signer: Signer.generate(), apiKey: API_KEY, logger: silentLogger() },
      )
      await m.start()
      await m.start()
      expect(m.status).toBe('running')
      await m.stop()
      await m.stop()
      expect(m.status).toBe('stopped')
    } finally {
      await rm(d, { recursive: true, force: true })
    }
  })
})
