import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import { PassThrough } from 'node:stream'
import fastifySwagger from '@fastify/swagger'
import * as dagJson from '@ipld/dag-json'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
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
import { BadRequestError, toHttpError, UnauthorizedError } from './errors.js'
import { parseJsonBody } from './json-body.js'
import { type BodyOf, ErrorBody, type ParamsOf, type QueryOf, type RouteDef, routes } from './routes.js'

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
    return503OnClosing: true,
    // A client that trickles a request (or never finishes one) is cut off instead of holding a socket forever;
    // five minutes leaves room for a large CAR upload on a slow link.
    requestTimeout: 5 * 60_000,
  })

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

  app.setErrorHandler((err, req, reply) => {
    const e = toHttpError(err)
    if (e.status >= 500) req.log.error({ err, code: e.code }, 'request failed')
    else req.log.info({ code: e.code, msg: e.message }, 'request rejected')
    if (e.code === 'STORE_UNAVAILABLE') c.onStoreError?.(err)
    const body: ErrorBody = { code: e.code, message: e.message, requestId: req.id }
    if (e.details) body.details = e.details
    void reply.code(e.status).type('application/json').send(body)
  })
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ code: 'ROUTE_NOT_FOUND', message: `no route ${req.method} ${req.url}`, requestId: req.id })
  })

  // JSON bodies are refused rather than changed: big integers, invalid Unicode, too deep (see json-body.ts).
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as Buffer))
    } catch (err) {
      done(err as Error, undefined)
    }
  })
  app.addContentTypeParser('application/vnd.ipld.car', { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  )
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) =>
    done(null, body),
  )

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

function cidParam(req: FastifyRequest): CID {
  return parseCid((req.params as ParamsOf<typeof routes.getBlock>).cid)
}

function buildHandlers(
  c: ApiComponents,
  app: FastifyInstance,
  streams: Set<() => void>,
): Record<string, Handler> {
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
      const rootCid = root ? parseCid(root) : undefined
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
      const body = req.body
      if (!(body instanceof Buffer) || body.length === 0)
        throw new BadRequestError('send the CAR file as the body')
      const r = await importCar(c.store, new Uint8Array(body.buffer, body.byteOffset, body.length), {
        metrics: c.metrics,
      })
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
