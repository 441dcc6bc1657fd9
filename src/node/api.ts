/**
 * The handlers of the node's own routes (`routes.ts`): liveness, readiness, metrics, identity and the
 * `/v1/events` stream. The node builds them with `nodeHandlers` and hands them to the API server.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { HandlerContext, ModuleHandlers } from '../api/index.js'
import type { BlockStore, ChainWriter } from '../dag/index.js'
import type { EventBus, Metrics, NodeEvent, Readiness } from '../observability/index.js'
import { VERSION } from '../version.js'
import { nodeRoutes } from './routes.js'

/** Send a comment line this often on an idle event stream, so proxies and clients know it is alive. */
const SSE_KEEPALIVE_MS = 15_000
/** Bytes a slow event-stream client may leave unread before it is disconnected. */
const SSE_MAX_BUFFERED = 4 * 1024 * 1024

/** What the node's handlers use. */
export interface NodeApiComponents {
  did: string
  store: Pick<BlockStore, 'backend'>
  writer: ChainWriter
  readiness: Readiness
  metrics: Metrics
  startedAt: Date
  /** What the node sees, streamed by /v1/events. */
  events: EventBus
  /** The federation (its id) and the node's libp2p side, when it joined one. */
  federation?: { id: string; peerId: string; listenAddrs(): string[] }
}

/** The handlers of `nodeRoutes`. */
export function nodeHandlers(c: NodeApiComponents): ModuleHandlers<typeof nodeRoutes> {
  return {
    module: 'node',
    routes: nodeRoutes,
    handlers: {
      health: async () => ({ status: 'ok' }),
      ready: async (_req, reply) => {
        const report = await c.readiness.report()
        return reply.code(report.ready ? 200 : 503).send(report)
      },
      metrics: async (_req, reply) => {
        const text = await c.metrics.registry.metrics()
        return reply.type(c.metrics.registry.contentType).send(text)
      },
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
      events: async (req, reply, ctx) => streamEvents(c, req, reply, ctx),
    },
  }
}

/**
 * `/v1/events`: Server-Sent Events, one `event: <type>` with a JSON `data:` line per node event, from the moment
 * of connecting (no replay). A client that stops reading is cut off once SSE_MAX_BUFFERED bytes wait for it.
 */
function streamEvents(
  c: NodeApiComponents,
  req: FastifyRequest,
  reply: FastifyReply,
  ctx: HandlerContext,
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
  const untrack = ctx.trackStream(end)
  res.once('close', untrack)
  req.log.info('event stream opened')
  return reply
}
