import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import { maxHeaderSize, STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { PassThrough, Readable } from 'node:stream'
import AjvCompiler from '@fastify/ajv-compiler'
import SerializerSelector from '@fastify/fast-json-stringify-compiler'
import fastifySwagger from '@fastify/swagger'
import * as dagJson from '@ipld/dag-json'
import { BulkheadRejectedError, bulkhead } from 'cockatiel'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
} from 'fastify'
import {
  BlockNotFoundError,
  type BlockStore,
  type ChainWriter,
  type CID,
  DAG_CBOR,
  decodeSignedBlock,
  decodeValue,
  exportCar,
  type ImportCarResult,
  InvalidCidError,
  importCar,
  parseCid,
  VALUE_RECORD_TYPE,
  verifyStore,
} from '../dag/index.js'
import { IcnError } from '../identity/index.js'
// errors.js directly: the CLI's API client loads this module, and network/index.js would bring libp2p with it.
import { NoFederationError } from '../network/errors.js'
import type { PeerHealth } from '../network/index.js'
import type { EventBus, Logger, Metrics, NodeEvent, Readiness } from '../observability/index.js'
import { VERSION } from '../version.js'
import { MAX_CONCURRENT_IMPORTS, readCarUpload } from './car-upload.js'
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
  UnsupportedMediaTypeError,
} from './errors.js'
import { parseJsonBody } from './json-body.js'
import {
  type BodyOf,
  ErrorBody,
  MAX_IMPORT_BYTES,
  type ParamsOf,
  type QueryOf,
  type RouteDef,
  routes,
} from './routes.js'

/** What the API needs from the node: narrow, so tests can hand in their own. */
export interface ApiComponents {
  did: string
  store: BlockStore
  writer: ChainWriter
  readiness: Readiness
  metrics: Metrics
  logger: Logger
  /** The operator's API key; write routes require it. */
  apiKey: string
  startedAt: Date
  /** Roots garbage collection must keep besides pins (the node's own chain heads). */
  gcRoots(): Promise<CID[]>
  /** Told about store failures so readiness turns false at once. */
  onStoreError?(err: unknown): void
  /** What the node sees, streamed by /v1/events. */
  events: EventBus
  /** The federation and network, when the node joined one (started with a genesis). */
  federation?: ApiFederation
}

/** The federation side of the node, as the API shows it. */
export interface ApiFederation {
  id: string
  name: string
  founder: string
  members: string[]
  nodes: string[]
  parameters: Record<string, number>
  peerId: string
  listenAddrs(): string[]
  peers(): Promise<PeerHealth[]>
}

/** Send a comment line this often on an idle event stream, so proxies and clients know it is alive. */
const SSE_KEEPALIVE_MS = 15_000
/** Bytes a slow event-stream client may leave unread before it is disconnected. */
const SSE_MAX_BUFFERED = 4 * 1024 * 1024

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

/** The value a route handler returns: a JSON body, or a raw reply it already sent. */
type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>

/** Build the fastify server with every route of `routes.ts`, OpenAPI, metrics, auth and error mapping. */
export async function createApiServer(
  c: ApiComponents,
  opts: ApiServerOptions = {},
): Promise<FastifyInstance> {
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

  app.addHook('onResponse', async (req, reply) => {
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
  })
  app.addHook('onSend', async (req, reply, payload) => {
    reply.header('x-request-id', req.id)
    return payload
  })

  let closing = false
  app.addHook('onRequest', async () => {
    if (closing) throw new ShuttingDownError()
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
      const body = { content: { [def.requestContentType]: { schema: { type: 'string', format: 'binary' } } } }
      return { schema: { ...schema, body }, url }
    },
  })
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
  const handlers = buildHandlers(c, app, streams)
  for (const def of Object.values(routes) as RouteDef[]) {
    const handler = handlers[def.id]
    if (!handler) throw new Error(`route ${def.id} has no handler`)
    app.route({
      method: def.method,
      url: def.url,
      bodyLimit: def.bodyLimit,
      schema: routeSchema(def),
      onRequest: def.auth ? requireKey : undefined,
      preParsing: mediaCheck(def),
      handler: async (req, reply) => {
        const out = await handler(req, reply)
        if (reply.sent) return reply
        if (out !== undefined) return reply.code(def.status ?? 200).send(out)
        return reply
      },
    })
  }
  return app
}

/** Fastify's default validator and serializer factories, each compiling lazily (see `lazyCompiler`). */
function lazyCompilers(): CompilersFactory {
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
function allowedMethods(path: string): string[] {
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
function mediaCheck(
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

function routeSchema(def: RouteDef): Record<string, unknown> {
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

/** Longest text taken as a CID (a CIDv1 sha2-256 in base32 is 59 characters). */
const MAX_CID_CHARS = 200

/** Parse a CID from a URL parameter or query, refusing overlong text before parsing it. */
function cidFrom(text: string): CID {
  if (text.length > MAX_CID_CHARS)
    throw new InvalidCidError(`not a CID: ${text.length} characters (at most ${MAX_CID_CHARS})`, {
      length: text.length,
    })
  return parseCid(text)
}

function cidParam(req: FastifyRequest): CID {
  return cidFrom((req.params as ParamsOf<typeof routes.getBlock>).cid)
}

function buildHandlers(
  c: ApiComponents,
  app: FastifyInstance,
  streams: Set<() => void>,
): Record<string, Handler> {
  const importSlots = bulkhead(MAX_CONCURRENT_IMPORTS, 0)
  return {
    health: async () => ({ status: 'ok' }),
    ready: async (_req, reply) => {
      const report = await c.readiness.report()
      return reply.code(report.ready ? 200 : 503).send(report)
    },
    metrics: async (_req, reply) => {
      const text = await c.metrics.registry.metrics()
      return reply.type(c.metrics.registry.contentType).send(text)
    },
    openapi: async () => app.swagger(),
    getNode: async () => {
      const head = await c.writer.currentHead()
      return {
        did: c.did,
        version: VERSION,
        store: c.store.backend,
        uptimeSeconds: Math.round((Date.now() - c.startedAt.getTime()) / 10) / 100,
        startedAt: c.startedAt.toISOString(),
        chain: c.writer.chain,
        head: head ? { seq: head.seq, cid: head.cid.toString() } : null,
        peerId: c.federation?.peerId ?? null,
        listenAddrs: c.federation?.listenAddrs() ?? [],
        federation: c.federation?.id ?? null,
      }
    },
    getFederation: async () => {
      const f = c.federation
      if (!f) throw new NoFederationError()
      const { id, name, founder, members, nodes, parameters } = f
      return { id, name, founder, members, nodes, parameters }
    },
    getPeers: async () => {
      const peers = (await c.federation?.peers()) ?? []
      const iso = (t?: number): { [k: string]: string } | undefined =>
        t === undefined ? undefined : { v: new Date(t).toISOString() }
      return {
        peers: peers.map((p) => {
          const { connectedSince, lastSeen, nextDialAt, ...rest } = p
          return {
            ...rest,
            ...(iso(connectedSince) ? { connectedSince: iso(connectedSince)!.v } : {}),
            ...(iso(lastSeen) ? { lastSeen: iso(lastSeen)!.v } : {}),
            ...(iso(nextDialAt) ? { nextDialAt: iso(nextDialAt)!.v } : {}),
          }
        }),
      }
    },
    events: async (req, reply) => streamEvents(c, req, reply, streams),
    putValue: async (req) => {
      const { value } = req.body as BodyOf<typeof routes.putValue>
      const r = await c.writer.appendValue(value, { source: 'http', log: req.log as Logger })
      req.log.info({ cid: r.cid.toString(), seq: r.seq, chunks: r.chunks }, 'value stored')
      return { cid: r.cid.toString(), seq: r.seq, chunks: r.chunks }
    },
    getBlock: async (req, reply) => {
      const cid = cidParam(req)
      const bytes = await c.store.get(cid)
      const { format } = req.query as QueryOf<typeof routes.getBlock>
      const wantsJson =
        format === 'json' || (format !== 'cbor' && /application\/json/.test(req.headers.accept ?? ''))
      if (!wantsJson) {
        const type = cid.code === DAG_CBOR ? 'application/vnd.ipld.dag-cbor' : 'application/vnd.ipld.raw'
        return reply
          .type(type)
          .header('cache-control', 'public, max-age=31536000, immutable')
          .send(Buffer.from(bytes))
      }
      if (cid.code !== DAG_CBOR)
        return {
          cid: cid.toString(),
          kind: 'raw',
          size: bytes.length,
          block: null,
          bytesBase64: Buffer.from(bytes).toString('base64'),
        }
      const block = JSON.parse(new TextDecoder().decode(dagJson.encode(decodeSignedBlock(bytes)))) as unknown
      return { cid: cid.toString(), kind: 'signed', size: bytes.length, block }
    },
    getValue: async (req) => {
      const cid = cidParam(req)
      if (cid.code !== DAG_CBOR) throw new NotAValueError(cid.toString())
      const block = decodeSignedBlock(await c.store.get(cid))
      if (block.type !== VALUE_RECORD_TYPE) throw new NotAValueError(cid.toString())
      const value = await decodeValue(cid, block.body, (chunk) => c.store.get(chunk))
      return { cid: cid.toString(), author: block.author, seq: block.seq, value }
    },
    exportCar: async (req, reply) => {
      const { root } = req.query as QueryOf<typeof routes.exportCar>
      const rootCid = root ? cidFrom(root) : undefined
      if (rootCid && !(await c.store.has(rootCid))) throw new BlockNotFoundError(rootCid.toString())
      const out = new PassThrough()
      const abort = new AbortController()
      reply.raw.on('close', () => abort.abort())
      exportCar(c.store, out, { root: rootCid, signal: abort.signal })
        .then((r) => {
          req.log.info({ blocks: r.blocks, bytes: r.bytes }, 'export done')
          out.end()
        })
        .catch((err: unknown) => {
          req.log.error({ err }, 'export failed')
          out.destroy(err as Error)
        })
      return reply.type('application/vnd.ipld.car').send(out)
    },
    importCar: async (req) => {
      // Slots are taken before a byte of the body is read; a busy node refuses at once (no queue, so a burst of
      // uploads cannot pile up in memory). Each holds at most MAX_IMPORT_BYTES.
      let held = 0
      const run = async (): Promise<ImportCarResult> => {
        c.metrics.importsRunning.inc()
        try {
          const length = req.headers['content-length']
          const bytes = await readCarUpload(req.body instanceof Readable ? req.body : req.raw, {
            maxBytes: MAX_IMPORT_BYTES,
            declaredLength: length === undefined ? undefined : Number(length),
            onHeld: (n) => {
              held += n
              c.metrics.importBufferedBytes.inc(n)
            },
          })
          return await importCar(c.store, bytes, { metrics: c.metrics, maxBytes: MAX_IMPORT_BYTES })
        } finally {
          c.metrics.importBufferedBytes.dec(held)
          c.metrics.importsRunning.dec()
        }
      }
      let r: ImportCarResult
      try {
        r = await importSlots.execute(run)
      } catch (err) {
        if (err instanceof BulkheadRejectedError) {
          c.metrics.importsRejected.inc({ reason: 'busy' })
          throw new ImportBusyError(MAX_CONCURRENT_IMPORTS)
        }
        const code = (err as { code?: string }).code
        if (code === 'PAYLOAD_TOO_LARGE') c.metrics.importsRejected.inc({ reason: 'too_large' })
        else if (code === 'INVALID_CAR') c.metrics.importsRejected.inc({ reason: 'invalid' })
        throw err
      }
      req.log.info({ blocks: r.blocks, stored: r.stored }, 'import done')
      return { ...r, roots: r.roots.map(String) }
    },
    verify: async (req) => {
      const r = await verifyStore(c.store)
      req.log.info({ checked: r.checked, bad: r.bad.length }, 'verify done')
      return r
    },
    gc: async (req) => {
      const r = await c.store.gc({ roots: await c.gcRoots() })
      req.log.info({ removed: r.removed }, 'gc done')
      return r
    },
    listPins: async () => ({ pins: (await c.store.pins()).map(String) }),
    addPin: async (req) => {
      const cid = cidParam(req)
      await c.store.pin(cid)
      return { cid: cid.toString(), pinned: true }
    },
    removePin: async (req) => {
      const cid = cidParam(req)
      await c.store.unpin(cid)
      return { cid: cid.toString(), pinned: false }
    },
    chains: async () => ({
      chains: (await c.store.chainHeads()).map((h) => ({ ...h, cid: h.cid.toString() })),
    }),
    evidence: async () => ({
      evidence: (await c.store.evidence()).map((e) => ({
        chain: e.chain,
        seq: e.seq,
        first: e.first.toString(),
        second: e.second.toString(),
        detectedAt: new Date(e.detectedAt).toISOString(),
      })),
    }),
    stats: async () => c.store.stats(),
  }
}

/**
 * `/v1/events`: Server-Sent Events, one `event: <type>` with a JSON `data:` line per node event, from the moment
 * of connecting (no replay). A client that stops reading is cut off once SSE_MAX_BUFFERED bytes wait for it.
 */
function streamEvents(
  c: ApiComponents,
  req: FastifyRequest,
  reply: FastifyReply,
  streams: Set<() => void>,
): FastifyReply {
  const res = reply.raw
  reply.hijack()
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-request-id': req.id,
  })
  res.write(': icn events\n\n')
  c.metrics.sseClients.inc()
  let closed = false
  // Events of one turn of the event loop go out in one write (a busy node stores many blocks per turn).
  let batch = ''
  const flush = (): void => {
    const text = batch
    batch = ''
    if (closed || text === '') return
    if (res.writableLength > SSE_MAX_BUFFERED) {
      req.log.warn({ buffered: res.writableLength }, 'event stream client too slow: disconnecting')
      end()
      return
    }
    res.write(text)
  }
  const send = (event: NodeEvent, id: number): void => {
    if (closed) return
    if (batch === '') setImmediate(flush)
    batch += `id: ${id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`
  }
  const unsubscribe = c.events.subscribe(send)
  const keepalive = setInterval(() => res.write(': keepalive\n\n'), SSE_KEEPALIVE_MS)
  keepalive.unref()
  const end = (): void => {
    if (closed) return
    closed = true
    unsubscribe()
    clearInterval(keepalive)
    c.metrics.sseClients.dec()
    res.end()
  }
  res.on('close', end)
  res.on('error', end)
  streams.add(end)
  res.once('close', () => streams.delete(end))
  req.log.info('event stream opened')
  return reply
}

/** The CID names a block that is not an `icn.value/v1` record. */
export class NotAValueError extends IcnError {
  override readonly name = 'NotAValueError'
  constructor(cid: string) {
    super('NOT_A_VALUE', `block ${cid} is not an icn.value/v1 record`, { details: { cid } })
  }
}
