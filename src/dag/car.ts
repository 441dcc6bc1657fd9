import type { Writable } from 'node:stream'
import { CarBlockIterator, CarWriter } from '@ipld/car'
import { varint } from 'multiformats'
import type { Metrics } from '../observability/index.js'
import { isInputError } from './base.js'
import { type Block, decodeSignedBlock, validateBlock } from './block.js'
import { type CID, checkCid, DAG_CBOR, RAW } from './cid.js'
import { BlockNotFoundError, checkAborted, InvalidCarError, MalformedBlockError } from './errors.js'
import type { BlockStore } from './store.js'

/** Largest CAR `importCar` buffers unless told otherwise (1 GiB). */
export const DEFAULT_MAX_CAR_BYTES = 1024 * 1024 * 1024

export interface ExportCarOptions {
  /** Export only this block and everything it reaches through `store.links()`; absent: the whole store. */
  root?: CID
  signal?: AbortSignal
  /** Called after each block written, with the count so far. */
  onProgress?: (blocks: number) => void
  metrics?: Metrics
}

export interface ExportCarResult {
  blocks: number
  /** Bytes of CAR written to the stream. */
  bytes: number
  roots: CID[]
}

export interface ImportCarOptions {
  /** Refuse CARs larger than this many bytes (default 1 GiB). */
  maxBytes?: number
  signal?: AbortSignal
  source?: 'import'
  metrics?: Metrics
}

export interface ImportCarResult {
  /** Blocks in the CAR. */
  blocks: number
  stored: number
  /** Blocks the store already held, or repeated inside the CAR. */
  duplicates: number
  equivocations: number
  roots: CID[]
}

/**
 * Write a CARv1 backup of `store` to `out`, streaming and respecting backpressure. The stream is not ended:
 * the caller owns it (so stdout works too) and ends it when done.
 *
 * Without `root`: every block in insertion order, roots = the head of every chain (none if the store is
 * empty). With `root`: the root and every stored block it reaches, written so that a chain's lower `seq`
 * comes before its higher `seq` and signed blocks before the chunks they link; blocks it links that the store
 * does not hold are skipped. Throws BlockNotFoundError if the root itself is missing. If it fails midway (abort,
 * store or stream error) the stream holds a partial CAR that may still parse, only missing blocks: discard it.
 */
export async function exportCar(
  store: BlockStore,
  out: NodeJS.WritableStream | Writable,
  opts: ExportCarOptions = {},
): Promise<ExportCarResult> {
  const { signal } = opts
  checkAborted(signal)
  let roots: CID[]
  let source: AsyncIterable<Block>
  if (opts.root) {
    if (!(await store.has(opts.root, { signal }))) throw new BlockNotFoundError(opts.root.toString())
    roots = [opts.root]
    source = reachable(store, opts.root, signal)
  } else {
    roots = (await store.chainHeads({ signal })).map((h) => h.cid)
    source = store.all({ signal })
  }

  const { writer, out: car } = CarWriter.create(roots)
  let failure: unknown
  let blocks = 0
  let bytes = 0

  const produce = async (): Promise<void> => {
    try {
      for await (const block of source) {
        if (failure !== undefined) break
        checkAborted(signal)
        await writer.put(block)
        blocks++
        opts.onProgress?.(blocks)
      }
    } finally {
      await writer.close()
    }
  }

  // Keeps draining after a write failure so the producer's pending put() settles and it can stop.
  const consume = async (): Promise<void> => {
    const onError = (err: unknown): void => {
      failure ??= err
    }
    out.on('error', onError)
    try {
      for await (const chunk of car) {
        if (failure !== undefined) continue
        try {
          await writeChunk(out, chunk)
          bytes += chunk.length
        } catch (err) {
          failure ??= err
        }
      }
    } finally {
      out.removeListener('error', onError)
    }
  }

  const [produced] = await Promise.allSettled([produce(), consume()])
  if (failure !== undefined) throw failure
  if (produced.status === 'rejected') throw produced.reason
  opts.metrics?.carBlocks.inc({ direction: 'export' }, blocks)
  return { blocks, bytes, roots }
}

/** Write one chunk; wait for 'drain' when the stream asks, failing on 'error' or 'close'. */
function writeChunk(out: NodeJS.WritableStream | Writable, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    let ok: boolean
    try {
      ok = out.write(chunk)
    } catch (err) {
      reject(err)
      return
    }
    if (ok) {
      resolve()
      return
    }
    const cleanup = (): void => {
      out.removeListener('drain', onDrain)
      out.removeListener('error', onError)
      out.removeListener('close', onClose)
    }
    const onDrain = (): void => {
      cleanup()
      resolve()
    }
    const onError = (err: unknown): void => {
      cleanup()
      reject(err)
    }
    const onClose = (): void => {
      cleanup()
      reject(new Error('output stream closed before the CAR was written'))
    }
    out.on('drain', onDrain)
    out.on('error', onError)
    out.on('close', onClose)
  })
}

/**
 * The blocks `root` reaches, depth first: a signed block after the signed blocks it links (so `prev` comes
 * first), then the raw chunks it links. Only CIDs are kept in memory; bytes are read as each block is written.
 */
async function* reachable(store: BlockStore, root: CID, signal?: AbortSignal): AsyncGenerator<Block> {
  const seen = new Set<string>([root.toString()])
  const stack: { cid: CID; children: CID[]; next: number }[] = [
    { cid: root, children: await store.links(root, { signal }), next: 0 },
  ]
  while (stack.length > 0) {
    checkAborted(signal)
    const frame = stack[stack.length - 1]!
    const child = frame.children[frame.next++]
    if (child) {
      const key = child.toString()
      if (child.code === DAG_CBOR && !seen.has(key)) {
        seen.add(key)
        stack.push({ cid: child, children: await store.links(child, { signal }), next: 0 })
      }
      continue
    }
    stack.pop()
    const block = await getIfPresent(store, frame.cid, signal)
    if (!block) continue
    yield block
    for (const c of frame.children) {
      const key = c.toString()
      if (c.code === DAG_CBOR || seen.has(key)) continue
      seen.add(key)
      const chunk = await getIfPresent(store, c, signal)
      if (chunk) yield chunk
    }
  }
}

async function getIfPresent(store: BlockStore, cid: CID, signal?: AbortSignal): Promise<Block | undefined> {
  try {
    return { cid, bytes: await store.get(cid, { signal }) }
  } catch (err) {
    if (err instanceof BlockNotFoundError) return undefined
    throw err
  }
}

/**
 * Restore a CAR into `store` atomically: the whole file is read (at most `maxBytes`) and parsed, every block
 * is checked, then all of them go to `store.putMany` in one call, signed blocks ordered by (chain, seq) and
 * raw chunks after them. Any corrupt, truncated or invalid content throws InvalidCarError (code INVALID_CAR;
 * for a block that fails validation, `details` names its CID, index in the file and the store's error code)
 * and nothing is stored.
 */
export async function importCar(
  store: BlockStore,
  input: Uint8Array | AsyncIterable<Uint8Array>,
  opts: ImportCarOptions = {},
): Promise<ImportCarResult> {
  const { signal } = opts
  checkAborted(signal)
  const bytes = await readAll(input, opts.maxBytes ?? DEFAULT_MAX_CAR_BYTES, signal)
  const { roots, blocks } = await parseCar(bytes, signal)

  // One entry per distinct CID, remembering where it was in the file for error messages.
  const indexOf = new Map<string, number>()
  const unique: { block: Block; index: number; chain: string; seq: number }[] = []
  const raw: Block[] = []
  let repeated = 0
  for (const [index, block] of blocks.entries()) {
    const key = block.cid.toString()
    if (indexOf.has(key)) {
      repeated++
      continue
    }
    indexOf.set(key, index)
    if (block.cid.code === RAW) {
      raw.push(block)
      continue
    }
    let chain = ''
    let seq = -1
    try {
      const decoded = decodeSignedBlock(block.bytes) as unknown as Record<string, unknown> | null
      if (decoded && typeof decoded === 'object') {
        if (typeof decoded.chain === 'string') chain = decoded.chain
        if (typeof decoded.seq === 'number') seq = decoded.seq
      }
    } catch (err) {
      // Not decodable: ask validateBlock for the precise reason (CID mismatch, bad encoding, ...).
      throw invalidBlock(block, index, precise(block, err))
    }
    unique.push({ block, index, chain, seq })
  }
  unique.sort((a, b) => (a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : a.seq - b.seq || a.index - b.index))
  const ordered = [...unique.map((u) => u.block), ...raw]

  checkAborted(signal)
  let results: Awaited<ReturnType<BlockStore['putMany']>>
  try {
    results = await store.putMany(ordered, { signal, source: 'import' })
  } catch (err) {
    if (!isInputError(err)) throw err
    const culprit = findCulprit(err, ordered, unique)
    const index = culprit ? indexOf.get(culprit.cid.toString()) : undefined
    throw invalidBlock(culprit, index, err as Error & { code: string })
  }

  let stored = 0
  let duplicates = repeated
  let equivocations = 0
  for (const r of results) {
    if (r.status === 'stored') stored++
    else if (r.status === 'duplicate') duplicates++
    else equivocations++
  }
  opts.metrics?.carBlocks.inc({ direction: 'import' }, blocks.length)
  return { blocks: blocks.length, stored, duplicates, equivocations, roots }
}

async function readAll(
  input: Uint8Array | AsyncIterable<Uint8Array>,
  maxBytes: number,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  if (input instanceof Uint8Array) {
    if (input.length > maxBytes) throw tooLarge(input.length, maxBytes)
    return input
  }
  const parts: Uint8Array[] = []
  let total = 0
  for await (const part of input) {
    checkAborted(signal)
    if (total + part.length > maxBytes) throw tooLarge(total + part.length, maxBytes)
    parts.push(part)
    total += part.length
  }
  if (parts.length === 1) return parts[0]!
  const all = new Uint8Array(total)
  let off = 0
  for (const p of parts) {
    all.set(p, off)
    off += p.length
  }
  return all
}

function tooLarge(size: number, limit: number): InvalidCarError {
  return new InvalidCarError(`CAR is too large: more than ${limit} bytes (read ${size})`, {
    details: { limit, size },
  })
}

/** Parse header and every block; any structural problem becomes an InvalidCarError. */
async function parseCar(bytes: Uint8Array, signal?: AbortSignal): Promise<{ roots: CID[]; blocks: Block[] }> {
  if (bytes.length === 0) throw new InvalidCarError('CAR is empty')
  let reader: CarBlockIterator
  let roots: CID[]
  try {
    reader = await CarBlockIterator.fromBytes(bytes)
    roots = await reader.getRoots()
  } catch (err) {
    throw new InvalidCarError(`CAR header is invalid: ${(err as Error).message}`, { cause: err })
  }
  for (const [i, root] of roots.entries()) {
    try {
      checkCid(root)
    } catch (err) {
      throw new InvalidCarError(`CAR root ${i} (${root}) is not accepted: ${(err as Error).message}`, {
        cause: err,
        details: { root: i },
      })
    }
  }

  // @ipld/car trusts section lengths; a section shorter than its CID would make it re-read bytes forever. Sum
  // what each block must have consumed and stop as soon as it exceeds the file.
  let consumed = headerLength(bytes, reader.version)
  const blocks: Block[] = []
  try {
    for await (const block of reader) {
      const index = blocks.length
      if (index % 1024 === 0) checkAborted(signal)
      const section = block.cid.bytes.length + block.bytes.length
      consumed += varint.encodingLength(section) + section
      if (consumed > bytes.length)
        throw new InvalidCarError(`CAR is corrupt: section lengths exceed the file at block ${index}`, {
          details: { index },
        })
      try {
        checkCid(block.cid)
      } catch (err) {
        throw new InvalidCarError(
          `block ${index} (${block.cid}) is not accepted: ${(err as Error).message}`,
          {
            cause: err,
            details: { index, cid: block.cid.toString() },
          },
        )
      }
      blocks.push(block)
    }
  } catch (err) {
    if (err instanceof InvalidCarError) throw err
    throw new InvalidCarError(
      `CAR is corrupt or truncated at block ${blocks.length}: ${(err as Error).message}`,
      {
        cause: err,
        details: { index: blocks.length },
      },
    )
  }
  if (reader.version === 1 && consumed !== bytes.length)
    throw new InvalidCarError(`CAR is corrupt: sections account for ${consumed} of ${bytes.length} bytes`)
  return { roots, blocks }
}

/** Bytes taken by a CARv1 header (length varint + DAG-CBOR header); 0 when not applicable. */
function headerLength(bytes: Uint8Array, version: number): number {
  if (version !== 1) return 0
  const [length, size] = varint.decode(bytes)
  return length + size
}

/** The typed error validateBlock gives for a block that did not decode, or a MalformedBlockError. */
function precise(block: Block, decodeError: unknown): Error & { code: string } {
  try {
    validateBlock(block.cid, block.bytes)
  } catch (err) {
    if (isInputError(err)) return err as Error & { code: string }
  }
  return new MalformedBlockError(`not valid DAG-CBOR: ${(decodeError as Error).message}`)
}

/** The block a store input error is about: named in its details, or the first to fail validation again. */
function findCulprit(
  err: unknown,
  ordered: Block[],
  signed: { block: Block; chain: string; seq: number }[],
): Block | undefined {
  const details = ((err as { details?: Record<string, unknown> }).details ?? {}) as Record<string, unknown>
  const named = typeof details.cid === 'string' ? details.cid : undefined
  const expected = typeof details.expected === 'string' ? details.expected : undefined
  const cid = (err as { code?: string }).code === 'CID_MISMATCH' ? expected : named
  if (cid) return ordered.find((b) => b.cid.toString() === cid)
  if (typeof details.chain === 'string' && typeof details.seq === 'number')
    return signed.find((s) => s.chain === details.chain && s.seq === details.seq)?.block
  for (const b of ordered) {
    try {
      validateBlock(b.cid, b.bytes)
    } catch {
      return b
    }
  }
  return undefined
}

function invalidBlock(
  block: Block | undefined,
  index: number | undefined,
  err: Error & { code: string },
): InvalidCarError {
  const where = block ? `block ${index ?? '?'} (${block.cid})` : 'a block'
  return new InvalidCarError(`${where} fails validation: ${err.code}: ${err.message}`, {
    cause: err,
    details: { ...(err as { details?: object }).details, cid: block?.cid.toString(), index, code: err.code },
  })
}
