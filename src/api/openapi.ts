/**
 * The OpenAPI document of the route table, made by @fastify/swagger on a fastify instance of its own the first
 * time it is asked for, then kept. The serving instance does not register the swagger plugin: the plugin, and
 * the YAML and semver code it brings, would be loaded and run at every node start for a document few ever read.
 * The document comes from the same definitions the server routes by (`routes.ts` through `routeSchema`), with
 * the same shared schemas, so it describes exactly what the server checks and sends.
 */
import type { FastifyInstance } from 'fastify'
import { VERSION } from '../version.js'
import { ErrorBody, type RouteDef, routes } from './routes.js'
import { routeSchema } from './schemas.js'

let document: Promise<unknown> | undefined

/** The OpenAPI 3 document of every route (built once per process, on first call). */
export function openApiDocument(): Promise<unknown> {
  document ??= build().catch((err: unknown) => {
    document = undefined // a failure is not kept: the next request tries again
    throw err
  })
  return document
}

async function build(): Promise<unknown> {
  const [{ default: Fastify }, { default: fastifySwagger }] = await Promise.all([
    import('fastify'),
    import('@fastify/swagger'),
  ])
  const app: FastifyInstance = Fastify({ logger: false })
  try {
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'ICN node API',
          version: VERSION,
          description: 'HTTP API of an InterCooperative Network node',
        },
        components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
      },
      transform: ({ schema, url, route }) => {
        const def = (Object.values(routes) as RouteDef[]).find(
          (r) => r.url === url && r.method === route.method,
        )
        if (!def?.requestContentType) return { schema, url }
        const body = {
          content: { [def.requestContentType]: { schema: { type: 'string', format: 'binary' } } },
        }
        return { schema: { ...schema, body }, url }
      },
    })
    app.addSchema(ErrorBody)
    // Nothing is compiled or served here: only the definitions are collected.
    app.setValidatorCompiler(() => () => true)
    app.setSerializerCompiler(() => (data) => JSON.stringify(data))
    for (const def of Object.values(routes) as RouteDef[])
      app.route({
        method: def.method,
        url: def.url,
        schema: routeSchema(def),
        handler: async () => undefined,
      })
    await app.ready()
    return app.swagger()
  } finally {
    await app.close()
  }
}
