import * as dagCbor from '@ipld/dag-cbor'
import { type Block, createRawBlock } from './block.js'
import { CID } from './cid.js'
import { IncompleteValueError, MalformedBlockError } from './errors.js'
import { checkCborLimits, checkValueLimits, MAX_BLOCK_DEPTH, MAX_VALUE_DEPTH } from './limits.js'

/** Values whose DAG-CBOR encoding is at most this many bytes are stored inside the signed block. */
export const INLINE_VALUE_BYTES = 1024 * 1024
/** Size of each raw chunk of a larger value. */
export const CHUNK_BYTES = 1024 * 1024
/** Largest value accepted (64 chunks). */
export const MAX_VALUE_BYTES = 64 * CHUNK_BYTES

/** The body of an `icn.value/v1` record: the value inline, or the list of raw chunks of its DAG-CBOR bytes. */
export type ValueBody = { inline: unknown } | { chunked: { size: number; parts: CID[] } }

export const VALUE_RECORD_TYPE = 'icn.value/v1'

/**
 * Split a value into the signed record's body and the raw chunk blocks it links. The value is first checked
 * without recursion: at most MAX_VALUE_DEPTH levels (VALUE_TOO_DEEP), well-formed strings (INVALID_UNICODE).
 */
export function encodeValue(value: unknown): { body: ValueBody; chunks: Block[]; size: number } {
  checkValueLimits(value, MAX_VALUE_DEPTH)
  let bytes: Uint8Array
  try {
    bytes = dagCbor.encode(value)
  } catch (err) {
    throw new MalformedBlockError(`value cannot be encoded as DAG-CBOR: ${(err as Error).message}`)
  }
  if (bytes.length > MAX_VALUE_BYTES)
    throw new MalformedBlockError(`value is ${bytes.length} bytes, over the limit of ${MAX_VALUE_BYTES}`)
  if (bytes.length <= INLINE_VALUE_BYTES) return { body: { inline: value }, chunks: [], size: bytes.length }
  const chunks: Block[] = []
  for (let off = 0; off < bytes.length; off += CHUNK_BYTES)
    chunks.push(createRawBlock(bytes.subarray(off, off + CHUNK_BYTES)))
  return {
    body: { chunked: { size: bytes.length, parts: chunks.map((c) => c.cid) } },
    chunks,
    size: bytes.length,
  }
}

/** Read a value back from a record body, fetching chunks through `getChunk`. */
export async function decodeValue(
  recordCid: CID,
  body: unknown,
  getChunk: (cid: CID) => Promise<Uint8Array>,
): Promise<unknown> {
  if (body === null || typeof body !== 'object')
    throw new IncompleteValueError(recordCid.toString(), 'not a value record')
  if ('inline' in body) return (body as { inline: unknown }).inline
  const chunked = (body as { chunked?: { size?: unknown; parts?: unknown } }).chunked
  if (!chunked || typeof chunked.size !== 'number' || !Array.isArray(chunked.parts))
    throw new IncompleteValueError(recordCid.toString(), 'not a value record')
  // Any author can write any numbers here: bound them before allocating.
  const maxParts = Math.ceil(MAX_VALUE_BYTES / CHUNK_BYTES)
  if (!Number.isSafeInteger(chunked.size) || chunked.size < 0 || chunked.size > MAX_VALUE_BYTES)
    throw new IncompleteValueError(recordCid.toString(), `size ${String(chunked.size)} is out of range`)
  if (chunked.parts.length > maxParts)
    throw new IncompleteValueError(recordCid.toString(), `${chunked.parts.length} chunks, over ${maxParts}`)
  const out = new Uint8Array(chunked.size)
  let off = 0
  for (const part of chunked.parts) {
    const cid = CID.asCID(part)
    if (!cid) throw new IncompleteValueError(recordCid.toString(), 'chunk list holds a non-CID')
    const bytes = await getChunk(cid)
    if (off + bytes.length > out.length)
      throw new IncompleteValueError(recordCid.toString(), 'chunks exceed the size')
    out.set(bytes, off)
    off += bytes.length
  }
  if (off !== out.length)
    throw new IncompleteValueError(recordCid.toString(), `chunks hold ${off} of ${out.length} bytes`)
  // The chunks are opaque to the block rules: apply to the reassembled bytes the limits an inline value has
  // (levels 3 to MAX_BLOCK_DEPTH of its block), before the recursive decoder sees them.
  try {
    checkCborLimits(out, MAX_BLOCK_DEPTH - 2, 'value')
    return dagCbor.decode(out)
  } catch (err) {
    throw new IncompleteValueError(
      recordCid.toString(),
      `chunks do not hold a readable value: ${(err as Error).message}`,
    )
  }
}
