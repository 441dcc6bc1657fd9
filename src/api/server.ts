import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import { maxHeaderSize, STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify'
import type { Logger, Metrics } from '../observability/index.js'
import {
  ImportBusyError,
  MalformedHttpError,
  MethodNotAllowedError,
  RequestHeadersTooLargeError,
  RequestTimeoutError,
  RouteNotFoundError,
  ShuttingDownError,
  toHttpError,
  UnauthorizedError,
} from './errors.js'
import { parseJsonBody } from './json-body.js'
import type { Handler, HandlerContext, ModuleHandlers } from './module.js'
import { openApiDocument } from './openapi.js'
import { apiRoutes, ErrorBody, type RouteDef, routes } from './routes.js'
import { allowedMethods, lazyCompilers, mediaCheck, routeSchema } from './schemas.js'

/** What the server itself needs from the node; each module's handlers take their own (see `module.ts`). */
export interface ApiComponents {
  metrics: Metrics
  logger: Logger
  /** The operator's API key; write routes require it. */
  apiKey: string
  /** Told about store failures so readiness turns false at once. */
  onStoreError?(err: unknown): void
}

export interface ApiServerOptions {
  /** Default body limit for JSON routes, bytes. */
  bodyLimit?: number
  /**
   * When the route schemas are compiled. `lazy` (the default): each validator and response serializer on its
   * first use, so a node does not spend about 0.2 s of CPU at start on schemas most requests never touch
   * (Ajv's meta-schema alone is half of it). `eager`: all of them while the server is built, as fastify does
   * by default; tests use it to prove every schema compiles. Either way the same compilers, options and
   * schemas: the checks and the output are the same.
   */
  compileSchemas?: 'lazy' | 'eager'
}

/**
 * Build the fastify server with every route of `routes.ts`, OpenAPI, metrics, auth and error mapping. `modules`
 * are every module's handlers (each from its factory, e.g. `dagHandlers(components)`): together they must handle
 * every route of the table but the API's own (`apiRoutes`), each once, and nothing else, or this throws.
 */
export async function createApiServer(
  c: ApiComponents,
  modules: readonly ModuleHandlers[],
  opts: ApiServerOptions = {},
): Promise<FastifyInstance> {
  const handlers = handlerTable(modules)
  const app = Fastify({
    loggerInstance: c.logger as FastifyBaseLogger,
    // One log line per request comes from our onResponse hook (with route, status and latency).
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
    requestIdHeader: 'x-request-id',
    // `req.log` is bound to the request id (`reqId`); handlers pass it to the modules they call.
    genReqId: () => randomUUID(),
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Fastify's own compilers (Ajv, fast-json-stringify), compiling each schema on first use unless `eager`.
    ...(opts.compileSchemas === 'eager' ? {} : { schemaController: { compilersFactory: lazyCompilers() } }),
    // Refused during shutdown by our own hook below, so the reply has the documented error shape.
    return503OnClosing: false,
    // A client that trickles a request (or never finishes one) is cut off instead of holding a socket forever;
    // five minutes leaves room for a large CAR upload on a slow link.
    requestTimeout: 5 * 60_000,
    // No routing limit on a parameter's length (Node's header limit bounds the URL): a long CID reaches the
    // route and is refused there as INVALID_CID.
    routerOptions: { maxParamLength: maxHeaderSize },
    // What fastify refuses before routing (bad percent-encoding) goes through the one error shape too.
    frameworkErrors: (err, req, reply) => sendError(err, req, reply),
    // What Node's HTTP parser refuses before there is a request at all (headers too large, bad Content-Length).
    clientErrorHandler: (err, socket) => sendClientError(err, socket),
  })

  /** The one place an error becomes a reply: `{ code, message, requestId, details? }`, status from the table. */
  const sendError = (err: unknown, req: FastifyRequest, reply: FastifyReply): void => {
    const e = toHttpError(err)
    if (e.status >= 500) req.log.error({ err, code: e.code }, 'request failed')
    else req.log.info({ code: e.code, msg: e.message }, 'request rejected')
    if (e.code === 'STORE_UNAVAILABLE') c.onStoreError?.(err)
    const body: ErrorBody = { code: e.code, message: e.message, requestId: req.id }
    if (e.details) body.details = e.details
    if (err instanceof MethodNotAllowedError) reply.header('allow', err.allow.join(', '))
    if (err instanceof ImportBusyError) reply.header('retry-after', String(err.retryAfterSeconds))
    void reply.code(e.status).header('x-request-id', req.id).type('application/json').send(body)
  }

  /**
   * A connection whose bytes are not a request fastify could route (Node's parser failed): answer with the
   * same error shape, a fresh request id in body and header, and close the connection.
   */
  const sendClientError = (err: Error & { code?: string }, socket: Duplex): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const error =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new RequestHeadersTooLargeError(maxHeaderSize)
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new RequestTimeoutError()
          : new MalformedHttpError(err.message.replace(/^Parse Error: /, ''))
    const e = toHttpError(error)
    const requestId = randomUUID()
    c.logger.info({ reqId: requestId, code: e.code, parser: err.code, msg: e.message }, 'request rejected')
    c.metrics.httpRequests.inc({ method: 'unparsed', route: 'unmatched', status: String(e.status) })
    // A reply already under way on this connection (keep-alive) must not get bytes written into it.
    const pending = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage
    if (!socket.writable || pending?.headersSent) {
      socket.destroy()
      return
    }
    const body = JSON.stringify({ code: e.code, message: e.message, requestId })
    socket.end(
      `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
    )
  }

  // The hooks every request passes through take fastify's callback form: an async hook costs each request a
  // promise and a turn of the microtask queue more.
  app.addHook('onResponse', (req, reply, done) => {
    const labels = {
      method: req.method,
      route: req.routeOptions.url ?? 'unmatched',
      status: String(reply.statusCode),
    }
    c.metrics.httpRequests.inc(labels)
    c.metrics.httpDuration.observe(labels, reply.elapsedTime / 1000)
    req.log.info(
      {
        method: req.method,
        url: req.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
      },
      'request',
    )
    done()
  })
  app.addHook('onSend', (req, reply, payload, done) => {
    reply.header('x-request-id', req.id)
    done(null, payload)
  })

  let closing = false
  app.addHook('onRequest', (_req, _reply, done) => {
    if (closing) done(new ShuttingDownError())
    else done()
  })

  app.setErrorHandler((err, req, reply) => sendError(err, req, reply))
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!
    const allow = allowedMethods(path)
    sendError(
      allow.length > 0
        ? new MethodNotAllowedError(req.method, path, allow)
        : new RouteNotFoundError(req.method, path),
      req,
      reply,
    )
  })

  // Only the body types some route takes; anything else is 415 before a byte of it is read (fastify's default
  // text/plain parser would hand a string to a JSON route).
  app.removeAllContentTypeParsers()
  // JSON bodies: one parse function (parseJsonBody, json-body.ts). It refuses rather than changes (big integers,
  // invalid Unicode, too deep) and gives own properties only, so a "__proto__" key is data, never a prototype.
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as Buffer))
    } catch (err) {
      done(err as Error, undefined)
    }
  })
  // CAR uploads are streamed to the route, which checks their framing as they arrive (see car-upload.ts).
  for (const type of ['application/vnd.ipld.car', 'application/octet-stream'])
    app.addContentTypeParser(type, (_req, payload, done) => done(null, payload))

  app.addSchema(ErrorBody)

  const expectedKey = createHash('sha256').update(c.apiKey).digest()
  const requireKey = async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization ?? ''
    const m = /^Bearer\s+(\S+)$/i.exec(header)
    const given = createHash('sha256')
      .update(m?.[1] ?? '')
      .digest()
    if (!m || !timingSafeEqual(given, expectedKey)) throw new UnauthorizedError()
  }

  // Open event streams, ended before the server closes so a graceful stop does not wait on them.
  const streams = new Set<() => void>()
  app.addHook('preClose', async () => {
    closing = true
    for (const end of [...streams]) end()
  })
  const ctx: HandlerContext = {
    trackStream: (end) => {
      streams.add(end)
      return () => streams.delete(end)
    },
  }
  handlers.set(apiRoutes.openapi.id, () => openApiDocument())
  for (const def of Object.values(routes) as RouteDef[]) {
    const handler = handlers.get(def.id)!
    app.route({
      method: def.method,
      url: def.url,
      bodyLimit: def.bodyLimit,
      schema: routeSchema(def),
      onRequest: def.auth ? requireKey : undefined,
      preParsing: mediaCheck(def),
      handler: async (req, reply) => {
        const out = await handler(req as never, reply, ctx)
        if (reply.sent) return reply
        if (out !== undefined) return reply.code(def.status ?? 200).send(out)
        return reply
      },
    })
  }
  return app
}

/**
 * Every module's handlers by route id, checked against the route table: a route of a module that is not the
 * table's, a route handled twice, a handler without a route, or a route (but the API's own) without a handler
 * is a programming error, thrown while the server is built.
 */
function handlerTable(modules: readonly ModuleHandlers[]): Map<string, Handler> {
  const out = new Map<string, Handler>()
  const owner = new Map<string, string>()
  const table = routes as Readonly<Record<string, RouteDef>>
  for (const m of modules) {
    for (const [id, def] of Object.entries(m.routes))
      if (table[id] !== def)
        throw new Error(`module ${m.module}: route ${id} is not in the route table (api/routes.ts)`)
    for (const [id, handler] of Object.entries(m.handlers)) {
      if (!(id in m.routes)) throw new Error(`module ${m.module}: handler ${id} has no route`)
      const other = owner.get(id)
      if (other) throw new Error(`route ${id} has two handlers (modules ${other} and ${m.module})`)
      owner.set(id, m.module)
      out.set(id, handler as Handler)
    }
  }
  for (const id of Object.keys(table))
    if (!out.has(id) && !(id in apiRoutes)) throw new Error(`route ${id} has no handler`)
  for (const id of Object.keys(apiRoutes))
    if (out.has(id)) throw new Error(`route ${id} is the API's own: module ${owner.get(id)} cannot handle it`)
  return out
}
