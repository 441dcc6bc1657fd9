/**
 * The handlers of the block store's routes (`routes.ts`), over the components they use. The node builds them
 * with `dagHandlers` and hands them to the API server.
 */
import { PassThrough, Readable } from 'node:stream'
import * as dagJson from '@ipld/dag-json'
import { BulkheadRejectedError, bulkhead } from 'cockatiel'
import { ImportBusyError, MAX_CONCURRENT_IMPORTS, type ModuleHandlers, readCarUpload } from '../api/index.js'
import type { Logger, Metrics } from '../observability/index.js'
import { decodeSignedBlock } from './block.js'
import { exportCar, type ImportCarResult, importCar } from './car.js'
import type { ChainWriter } from './chain-writer.js'
import { type CID, DAG_CBOR, parseCid } from './cid.js'
import { BlockNotFoundError, InvalidCidError, NotAValueError } from './errors.js'
import { dagRoutes, MAX_IMPORT_BYTES } from './routes.js'
import type { BlockStore } from './store.js'
import { decodeValue, VALUE_RECORD_TYPE } from './value.js'
import { verifyStore } from './verify.js'

/** What the block store's handlers use. */
export interface DagApiComponents {
  store: BlockStore
  writer: ChainWriter
  metrics: Metrics
  /** Roots garbage collection must keep besides pins (the node's own chain heads). */
  gcRoots(): Promise<CID[]>
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

/** The handlers of `dagRoutes`. Each call has its own import slots: build it once per server. */
export function dagHandlers(c: DagApiComponents): ModuleHandlers<typeof dagRoutes> {
  const importSlots = bulkhead(MAX_CONCURRENT_IMPORTS, 0)
  return {
    module: 'dag',
    routes: dagRoutes,
    handlers: {
      putValue: async (req) => {
        const { value } = req.body
        const r = await c.writer.appendValue(value, { source: 'http', log: req.log as Logger })
        req.log.info({ cid: r.cid.toString(), seq: r.seq, chunks: r.chunks }, 'value stored')
        return { cid: r.cid.toString(), seq: r.seq, chunks: r.chunks }
      },
      getBlock: async (req, reply) => {
        const cid = cidFrom(req.params.cid)
        const bytes = await c.store.get(cid)
        const { format } = req.query
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
        const block = JSON.parse(
          new TextDecoder().decode(dagJson.encode(decodeSignedBlock(bytes))),
        ) as unknown
        return { cid: cid.toString(), kind: 'signed', size: bytes.length, block }
      },
      getValue: async (req) => {
        const cid = cidFrom(req.params.cid)
        if (cid.code !== DAG_CBOR) throw new NotAValueError(cid.toString())
        const block = decodeSignedBlock(await c.store.get(cid))
        if (block.type !== VALUE_RECORD_TYPE) throw new NotAValueError(cid.toString())
        const value = await decodeValue(cid, block.body, (chunk) => c.store.get(chunk))
        return { cid: cid.toString(), author: block.author, seq: block.seq, value }
      },
      exportCar: async (req, reply) => {
        const { root } = req.query
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
        const cid = cidFrom(req.params.cid)
        await c.store.pin(cid)
        return { cid: cid.toString(), pinned: true }
      },
      removePin: async (req) => {
        const cid = cidFrom(req.params.cid)
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
    },
  }
}
