/** The route handlers, one per route of `routes.ts`, over the node's components; and the `/v1/events` stream. */
import { PassThrough, Readable } from 'node:stream'
import * as dagJson from '@ipld/dag-json'
import { BulkheadRejectedError, bulkhead } from 'cockatiel'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import {
  BlockNotFoundError,
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
import type { Logger, NodeEvent } from '../observability/index.js'
import { VERSION } from '../version.js'
import { MAX_CONCURRENT_IMPORTS, readCarUpload } from './car-upload.js'
import { ImportBusyError } from './errors.js'
import { type BodyOf, MAX_IMPORT_BYTES, type ParamsOf, type QueryOf, type routes } from './routes.js'
import type { ApiComponents } from './server.js'

/** Send a comment line this often on an idle event stream, so proxies and clients know it is alive. */
const SSE_KEEPALIVE_MS = 15_000
/** Bytes a slow event-stream client may leave unread before it is disconnected. */
const SSE_MAX_BUFFERED = 4 * 1024 * 1024

/** The value a route handler returns: a JSON body, or a raw reply it already sent. */
export type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>

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

export function buildHandlers(
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
      const { id, name, founder, members, nodes, homes, parameters } = f
      return { id, name, founder, members, nodes, homes, parameters }
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
