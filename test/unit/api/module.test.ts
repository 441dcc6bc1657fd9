import { build } from 'esbuild'
import { Type } from 'typebox'
import { describe, expect, it } from 'vitest'
import {
  apiRoutes,
  composeRoutes,
  createApiServer,
  type ModuleHandlers,
  type RouteDef,
  route,
  routes,
} from '../../../src/api/index.js'
import { type DagApiComponents, dagHandlers } from '../../../src/dag/api.js'
import { economicsHandlers } from '../../../src/economics/api.js'
import { type NetworkApiComponents, networkHandlers } from '../../../src/network/api.js'
import { type NodeApiComponents, nodeHandlers } from '../../../src/node/api.js'
import { nodeRoutes } from '../../../src/node/routes.js'
import { webHandlers } from '../../../src/node/web.js'
import { createMetrics, silentLogger } from '../../../src/observability/index.js'

// The module contract (src/api/module.ts): each module's route table, composed into one, and each module's
// handlers, checked against it when the server is built. The handlers here are never called (no request is
// made to them), so they are built over empty components.
const server = { metrics: createMetrics(), logger: silentLogger(), apiKey: 'test-api-key-0123456789' }
const everyModule = (): ModuleHandlers[] => [
  nodeHandlers({} as NodeApiComponents),
  networkHandlers({} as NetworkApiComponents),
  economicsHandlers({ ledger: () => undefined }),
  dagHandlers({} as DagApiComponents),
  webHandlers(),
]

const def = (id: string, url: string, method: RouteDef['method'] = 'GET'): RouteDef =>
  route({ id, method, url, summary: id, tags: ['t'], auth: false, response: Type.Null() })

describe('composeRoutes', () => {
  it('keeps every route of every table, in order', () => {
    const a = { one: def('one', '/one') }
    const b = { two: def('two', '/two'), three: def('three', '/two', 'POST') }
    const table = composeRoutes(a, b)
    expect(Object.keys(table)).toEqual(['one', 'two', 'three'])
    expect(table.three).toBe(b.three)
  })

  it('refuses an id two tables define', () => {
    expect(() => composeRoutes({ one: def('one', '/a') }, { one: def('one', '/b') })).toThrow(
      /two routes have the id one/,
    )
  })

  it('refuses a method and URL two routes share, whatever their parameters are named', () => {
    expect(() => composeRoutes({ a: def('a', '/x/:cid') }, { b: def('b', '/x/:id') })).toThrow(
      /routes a and b are both GET \/x\/:id/,
    )
    // The same URL with another method is another route.
    expect(Object.keys(composeRoutes({ a: def('a', '/x') }, { b: def('b', '/x', 'DELETE') }))).toEqual([
      'a',
      'b',
    ])
  })

  it('refuses a key that is not its route id', () => {
    expect(() => composeRoutes({ one: def('uno', '/one') })).toThrow(/key one holds route uno/)
  })

  it('the node’s table has every route once, keyed by its id', () => {
    const endpoints = new Set<string>()
    for (const [key, r] of Object.entries(routes) as [string, RouteDef][]) {
      expect(r.id).toBe(key)
      endpoints.add(`${r.method} ${r.url}`)
    }
    expect(endpoints.size).toBe(Object.keys(routes).length)
  })
})

describe('createApiServer checks the modules against the route table', () => {
  it('builds with every module, and documents exactly the table’s routes', async () => {
    const app = await createApiServer(server, everyModule())
    try {
      const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
        paths: Record<string, Record<string, { summary: string; security?: unknown }>>
      }
      const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
        Object.entries(ops).map(([method, op]) => ({ path, method, op })),
      )
      const expected = (Object.values(routes) as RouteDef[]).filter((r) => !r.hidden)
      expect(documented.map((d) => `${d.method} ${d.path}`).sort()).toEqual(
        expected.map((r) => `${r.method.toLowerCase()} ${r.url.replace(/:([A-Za-z]+)/g, '{$1}')}`).sort(),
      )
      for (const r of expected) {
        const op = doc.paths[r.url.replace(/:([A-Za-z]+)/g, '{$1}')]![r.method.toLowerCase()]!
        expect(op.summary).toBe(r.summary)
        expect(op.security !== undefined, r.id).toBe(r.auth)
      }
    } finally {
      await app.close()
    }
  })

  it('refuses a route without a handler', async () => {
    const [node, ...rest] = everyModule()
    const { events: _, ...handlers } = node!.handlers as Record<string, unknown>
    const partial = { ...node!, handlers } as ModuleHandlers
    await expect(createApiServer(server, [partial, ...rest])).rejects.toThrow(/route events has no handler/)
    await expect(createApiServer(server, rest)).rejects.toThrow(/route health has no handler/)
  })

  it('refuses a handler without a route', async () => {
    const [node, ...rest] = everyModule()
    const extra = { ...node!, handlers: { ...node!.handlers, nope: async () => null } } as ModuleHandlers
    await expect(createApiServer(server, [extra, ...rest])).rejects.toThrow(
      /module node: handler nope has no route/,
    )
  })

  it('refuses a module route that is not in the table', async () => {
    const stray: ModuleHandlers = {
      module: 'stray',
      routes: { stray: def('stray', '/stray') },
      handlers: { stray: async () => null },
    }
    await expect(createApiServer(server, [...everyModule(), stray])).rejects.toThrow(
      /module stray: route stray is not in the route table/,
    )
    // Same id, another definition: also not the table's.
    const copy: ModuleHandlers = {
      module: 'copy',
      routes: { health: { ...nodeRoutes.health } },
      handlers: { health: async () => ({ status: 'ok' }) },
    }
    await expect(createApiServer(server, [...everyModule(), copy])).rejects.toThrow(
      /module copy: route health is not in the route table/,
    )
  })

  it('refuses a route handled twice, and a module handling the API’s own routes', async () => {
    await expect(
      createApiServer(server, [...everyModule(), nodeHandlers({} as NodeApiComponents)]),
    ).rejects.toThrow(/route health has two handlers \(modules node and node\)/)
    const own: ModuleHandlers = {
      module: 'own',
      routes: apiRoutes,
      handlers: { openapi: async () => ({}) },
    }
    await expect(createApiServer(server, [...everyModule(), own])).rejects.toThrow(
      /route openapi is the API's own: module own cannot handle it/,
    )
  })
})

describe('import weight', () => {
  // The CLI's client imports the route table: it must not bring fastify, a store backend or libp2p with it.
  it('the route table loads typebox and the modules’ routes.ts files only', async () => {
    const r = await build({
      entryPoints: ['src/api/routes.ts'],
      bundle: true,
      write: false,
      platform: 'node',
      format: 'esm',
      metafile: true,
      logLevel: 'silent',
    })
    const inputs = Object.keys(r.metafile.inputs)
    expect(inputs.filter((f) => f.startsWith('src/')).sort()).toEqual([
      'src/api/module.ts',
      'src/api/routes.ts',
      'src/dag/routes.ts',
      'src/economics/routes.ts',
      'src/network/routes.ts',
      'src/node/routes.ts',
      'src/node/web-routes.ts',
    ])
    const packages = new Set(
      inputs.map((f) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f)?.[1]).filter(Boolean),
    )
    expect([...packages]).toEqual(['typebox'])
  })
})
