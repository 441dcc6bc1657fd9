/**
 * How the route table becomes fastify routes: each route's schema (validation, serialization, OpenAPI), the lazy
 * schema compilers, the media-type check made before a body is read, and the methods a path allows.
 */
import type { Readable } from 'node:stream'
import AjvCompiler from '@fastify/ajv-compiler'
import SerializerSelector from '@fastify/fast-json-stringify-compiler'
import type { FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify'
import { UnsupportedMediaTypeError } from './errors.js'
import { type RouteDef, routes } from './routes.js'

/** The arguments fastify passes a schema compiler (validator or serializer) for one part of one route. */
interface SchemaCompileArgs {
  schema: unknown
  httpPart?: string
}

/**
 * Wrap a compiler so that it compiles on the first call of the function it returns, then calls that. The
 * builder itself (an Ajv instance with the shared schemas, which compiles the JSON-schema meta-schema) is also
 * made on first use. `errors` is forwarded: fastify reads a failed validator's errors from it.
 */
function lazyCompiler<A extends SchemaCompileArgs, F extends (data: unknown) => unknown>(
  build: () => (args: A) => F,
): (args: A) => F {
  let compiler: ((args: A) => F) | undefined
  return (args) => {
    // Fastify lowercases a headers schema only for its built-in compiler (a custom one gets it as written).
    if (args.httpPart === 'headers')
      throw new Error('headers schemas are not supported: the API compiles its schemas lazily')
    let fn: F | undefined
    const call = ((data: unknown) => {
      if (!fn) {
        compiler ??= build()
        fn = compiler(args)
      }
      return fn(data)
    }) as F
    Object.defineProperty(call, 'errors', { get: () => (fn as { errors?: unknown } | undefined)?.errors })
    return call
  }
}

/** Fastify's default validator and serializer factories, each compiling lazily (see `lazyCompiler`). */
export function lazyCompilers(): CompilersFactory {
  const validators = AjvCompiler()
  const serializers = SerializerSelector()
  return {
    buildValidator: (externalSchemas, ajvOptions) =>
      lazyCompiler(() => validators(externalSchemas as never, ajvOptions as never) as never) as never,
    buildSerializer: (externalSchemas, options) =>
      lazyCompiler(() => serializers(externalSchemas as never, options as never) as never) as never,
  }
}

type CompilersFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>

/** Methods some route has for this path (HEAD wherever GET is), in the order of `routes.ts`. */
export function allowedMethods(path: string): string[] {
  const methods = new Set<string>()
  for (const def of Object.values(routes) as RouteDef[]) {
    const literal = def.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const pattern = new RegExp(`^${literal.replace(/:[A-Za-z_]+/g, '[^/]+')}$`)
    if (!pattern.test(path)) continue
    methods.add(def.method)
    if (def.method === 'GET') methods.add('HEAD')
  }
  return [...methods]
}

/**
 * The body a route takes, checked before any of it is read: JSON routes (with a body schema) take
 * `application/json` only, even when empty; binary routes their `requestContentType` or
 * `application/octet-stream`. No route takes a content encoding (gzip…): bodies are sent uncompressed.
 */
export function mediaCheck(
  def: RouteDef,
): (req: FastifyRequest, reply: FastifyReply, payload: Readable) => Promise<Readable> {
  const accepted = def.body
    ? ['application/json']
    : def.requestContentType
      ? [def.requestContentType, 'application/octet-stream']
      : undefined
  return async (req, _reply, payload) => {
    const encoding = req.headers['content-encoding']?.trim().toLowerCase()
    if (encoding && encoding !== 'identity')
      throw new UnsupportedMediaTypeError(
        `content-encoding ${JSON.stringify(encoding)} is not supported: send the body uncompressed`,
      )
    if (!accepted) return payload
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
    if (!type || !accepted.includes(type))
      throw new UnsupportedMediaTypeError(
        `${def.method} ${def.url} takes a body of type ${accepted.join(' or ')}` +
          (type ? `, not ${type}` : ' (no content-type was given)'),
      )
    return payload
  }
}

export function routeSchema(def: RouteDef): Record<string, unknown> {
  const status = String(def.status ?? 200)
  const success = def.responseContentType
    ? {
        description: def.summary,
        content: {
          [def.responseContentType.split(';')[0]!]: { schema: { type: 'string', format: 'binary' } },
        },
      }
    : def.response
  const schema: Record<string, unknown> = {
    summary: def.summary,
    tags: def.tags,
    hide: def.hidden,
    response: {
      [status]: success,
      ...Object.fromEntries((def.alsoStatuses ?? []).map((s) => [String(s), success])),
      '4xx': { $ref: 'Error#' },
      '5xx': { $ref: 'Error#' },
    },
  }
  if (def.auth) schema.security = [{ apiKey: [] }]
  if (def.params) schema.params = def.params
  if (def.querystring) schema.querystring = def.querystring
  if (def.body) schema.body = def.body
  // Binary bodies are parsed to a Buffer, which a JSON-schema `type: string` would refuse: describe them in
  // the OpenAPI document only (see the swagger transform).
  if (def.requestContentType) schema.body = { content: { [def.requestContentType]: { schema: {} } } }
  return schema
}
