/**
 * What a module gives the HTTP API: its route definitions (`<module>/routes.ts`, typebox only, so the CLI's
 * client can import them without loading fastify, a store or libp2p) and a handler factory over the components
 * it needs (`<module>/api.ts`). `api/routes.ts` composes every module's definitions into the one route table;
 * the node calls each factory and hands the results to `createApiServer`, which refuses a route without a
 * handler and a handler without a route.
 *
 * This file is a leaf: it imports typebox and fastify's types only, so any module may import it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Static, TSchema } from 'typebox'

/**
 * One HTTP route: the server registers it, the OpenAPI document is generated from it and the CLI's typed
 * client calls it. Binary bodies and replies are described by `requestContentType` and `responseContentType`;
 * JSON ones by schemas.
 */
export interface RouteDef<
  P extends TSchema = TSchema,
  Q extends TSchema = TSchema,
  B extends TSchema = TSchema,
  R extends TSchema = TSchema,
> {
  id: string
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  url: string
  summary: string
  tags: string[]
  /** Needs the operator's API key (`Authorization: Bearer …`). */
  auth: boolean
  params?: P
  querystring?: Q
  body?: B
  /** Schema of the success reply (JSON routes). */
  response: R
  /** Status of the success reply. */
  status?: number
  /** Other statuses whose body is the success schema rather than an error (e.g. 503 from /ready). */
  alsoStatuses?: number[]
  /** Non-JSON request body (e.g. a CAR file). */
  requestContentType?: string
  /** Non-JSON success reply (e.g. a CAR stream, Prometheus text). */
  responseContentType?: string
  /** Largest accepted body, in bytes. */
  bodyLimit?: number
  /** Left out of the OpenAPI document. */
  hidden?: boolean
}

/** A module's routes, keyed by route id (each key equals its route's `id`). */
export type RouteTable = Readonly<Record<string, RouteDef>>

export type ParamsOf<R extends RouteDef> = Static<NonNullable<R['params']>>
export type QueryOf<R extends RouteDef> = Static<NonNullable<R['querystring']>>
export type BodyOf<R extends RouteDef> = Static<NonNullable<R['body']>>
export type ResponseOf<R extends RouteDef> = Static<R['response']>

/** Define one route, keeping its schemas' types (for the typed client and the handler's request). */
export function route<P extends TSchema, Q extends TSchema, B extends TSchema, R extends TSchema>(
  def: RouteDef<P, Q, B, R>,
): RouteDef<P, Q, B, R> {
  return def
}

/** What the server gives every handler besides the request and reply. */
export interface HandlerContext {
  /**
   * Register a long-lived reply (an event stream) by the function that ends it: the server calls it before it
   * closes, so a graceful stop does not wait on the stream. Returns the function that unregisters it.
   */
  trackStream(end: () => void): () => void
}

/** The request a route's handler gets: params, query and body typed by the route's schemas. */
export type RouteRequest<R extends RouteDef> = FastifyRequest<{
  Params: ParamsOf<R>
  Querystring: QueryOf<R>
  Body: BodyOf<R>
}>

/**
 * A route's handler. It returns the JSON body of the success reply (sent with the route's `status`), or sends
 * the reply itself (binary bodies, other statuses) and returns the reply. Errors it throws go through the
 * server's one error shape.
 */
export type Handler<R extends RouteDef = RouteDef> = (
  req: RouteRequest<R>,
  reply: FastifyReply,
  ctx: HandlerContext,
) => Promise<unknown>

/** One handler for each route of a table, and no others. */
export type Handlers<T extends RouteTable> = { [K in keyof T]: Handler<T[K]> }

/** One module's handlers, made by its factory over its components: what `createApiServer` takes. */
export interface ModuleHandlers<T extends RouteTable = RouteTable> {
  /** The module's name, for error messages. */
  module: string
  /** The module's route table (the same objects `api/routes.ts` composes). */
  routes: T
  handlers: Handlers<T>
}

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void
  ? I
  : never

/**
 * The one route table, from every module's: refuses (throws while the importing module loads, so every test and
 * the CLI fail at once) a key that is not its route's id, an id two modules define, and a method and URL two
 * routes share. Route order is the tables' order (it orders the OpenAPI document and the `Allow` header).
 */
export function composeRoutes<T extends RouteTable[]>(...tables: T): UnionToIntersection<T[number]> {
  const out: Record<string, RouteDef> = {}
  const endpoints = new Map<string, string>()
  for (const table of tables)
    for (const [key, def] of Object.entries(table)) {
      if (key !== def.id) throw new Error(`route table: key ${key} holds route ${def.id}`)
      if (key in out) throw new Error(`route table: two routes have the id ${key}`)
      const endpoint = `${def.method} ${def.url.replace(/:[A-Za-z_]+/g, ':')}`
      const other = endpoints.get(endpoint)
      if (other) throw new Error(`route table: routes ${other} and ${key} are both ${def.method} ${def.url}`)
      endpoints.set(endpoint, key)
      out[key] = def
    }
  return out as UnionToIntersection<T[number]>
}
