import * as dagCbor from '@ipld/dag-cbor'
import { type Block, CID, checkCborLimits, checkCid, MAX_BLOCK_BYTES } from '../dag/index.js'
import { ExchangeError, InvalidMessageError } from './errors.js'

/**
 * Wire formats of the federation's two protocols, all DAG-CBOR, all decoded with size limits and checked field
 * by field before anything else looks at them. See docs/protocol.md ("Replication").
 */

/** Most blocks one gossip announcement carries. */
export const MAX_BLOCKS_PER_ANNOUNCEMENT = 256
/** Most heads one exchange reply carries. */
export const MAX_HEADS_PER_RESPONSE = 2_000
/** Largest exchange request; requests are small (a few hundred CIDs at most). */
export const MAX_REQUEST_BYTES = 64 * 1024

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
}

function exactKeys(v: Record<string, unknown>, required: string[], optional: string[] = []): boolean {
  const keys = Object.keys(v)
  return required.every((k) => k in v) && keys.every((k) => required.includes(k) || optional.includes(k))
}

function isCount(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max
}

/** Blocks as they travel: a CID and the bytes it must hash to (checked by the store, which refuses a mismatch). */
function encodeBlocks(blocks: Block[]): { cid: CID; bytes: Uint8Array }[] {
  return blocks.map((b) => ({ cid: b.cid, bytes: b.bytes }))
}

function decodeBlocks(v: unknown, max: number, fail: (m: string) => never): Block[] {
  if (!Array.isArray(v) || v.length > max) fail(`blocks must be a list of at most ${max}`)
  return v.map((e, i) => {
    if (!isMap(e) || !exactKeys(e, ['cid', 'bytes'])) fail(`blocks[${i}] must be {cid, bytes}`)
    const cid = CID.asCID(e.cid)
    if (!cid) fail(`blocks[${i}].cid is not a CID`)
    if (!(e.bytes instanceof Uint8Array)) fail(`blocks[${i}].bytes is not bytes`)
    if (e.bytes.length > MAX_BLOCK_BYTES)
      throw new InvalidMessageError(
        'oversized',
        `blocks[${i}] is ${e.bytes.length} bytes, over ${MAX_BLOCK_BYTES}`,
      )
    try {
      checkCid(cid)
    } catch (err) {
      throw new InvalidMessageError('bad_cid', `blocks[${i}].cid: ${(err as Error).message}`)
    }
    return { cid, bytes: e.bytes }
  })
}

function decodeCbor(data: Uint8Array, limit: number, what: string): unknown {
  if (data.length > limit)
    throw new InvalidMessageError('oversized', `${what} is ${data.length} bytes, over the limit of ${limit}`)
  try {
    checkCborLimits(data, 16, what) // envelopes are shallow (blocks are byte strings): no deep recursion on input
    return dagCbor.decode(data)
  } catch (err) {
    throw new InvalidMessageError('malformed', `${what} is not DAG-CBOR: ${(err as Error).message}`)
  }
}

// ---- gossip ---------------------------------------------------------------------------------------------

/** A gossip message: signed blocks just stored by their author's node, in chain order. */
export interface Announcement {
  v: 1
  blocks: Block[]
}

export function encodeAnnouncement(blocks: Block[]): Uint8Array {
  return dagCbor.encode({ v: 1, blocks: encodeBlocks(blocks) })
}

/** Decode and check the shape of a gossip message; throws InvalidMessageError. */
export function decodeAnnouncement(data: Uint8Array, maxBytes: number): Announcement {
  const v = decodeCbor(data, maxBytes, 'gossip message')
  const fail = (m: string): never => {
    throw new InvalidMessageError('malformed', `gossip message: ${m}`)
  }
  if (!isMap(v) || !exactKeys(v, ['v', 'blocks']) || v.v !== 1) fail('expected {v: 1, blocks}')
  const blocks = decodeBlocks((v as Record<string, unknown>).blocks, MAX_BLOCKS_PER_ANNOUNCEMENT, fail)
  if (blocks.length === 0) fail('no blocks')
  return { v: 1, blocks }
}

// ---- block exchange ---------------------------------------------------------------------------------------

export interface HeadInfo {
  chain: string
  seq: number
  cid: CID
}

export type ExchangeRequest =
  /** Chain heads, sorted by chain, starting after `after`. */
  | { op: 'heads'; after?: string }
  /** Blocks of one chain from position `from`, in order, at most `limit`. */
  | { op: 'range'; chain: string; from: number; limit: number }
  /** Blocks by CID (absent ones are left out). */
  | { op: 'get'; cids: CID[] }
  /** Federation peers the answering node knows, with their addresses. */
  | { op: 'peers' }

export type ExchangeResponse =
  | { heads: HeadInfo[]; more: boolean }
  | { blocks: Block[]; more: boolean }
  | { peers: { peerId: string; addrs: string[] }[] }
  | { error: { code: string; message: string } }

export function encodeRequest(req: ExchangeRequest): Uint8Array {
  return dagCbor.encode(req)
}

/** Decode and check a request; `maxCids` bounds a get. Throws InvalidMessageError. */
export function decodeRequest(data: Uint8Array, maxCids: number): ExchangeRequest {
  const v = decodeCbor(data, MAX_REQUEST_BYTES, 'request')
  const fail = (m: string): never => {
    throw new InvalidMessageError('malformed', `request: ${m}`)
  }
  if (!isMap(v) || typeof v.op !== 'string') return fail('expected {op, ...}')
  switch (v.op) {
    case 'heads':
      if (!exactKeys(v, ['op'], ['after']) || (v.after !== undefined && typeof v.after !== 'string'))
        fail('heads takes an optional string after')
      return v.after === undefined ? { op: 'heads' } : { op: 'heads', after: v.after as string }
    case 'range':
      if (
        !exactKeys(v, ['op', 'chain', 'from', 'limit']) ||
        typeof v.chain !== 'string' ||
        v.chain.length > 1024 ||
        !isCount(v.from, Number.MAX_SAFE_INTEGER) ||
        !isCount(v.limit, 1_000_000) ||
        v.limit === 0
      )
        fail('range takes {chain, from >= 0, limit >= 1}')
      return { op: 'range', chain: v.chain as string, from: v.from as number, limit: v.limit as number }
    case 'get': {
      if (!exactKeys(v, ['op', 'cids']) || !Array.isArray(v.cids) || v.cids.length > maxCids)
        fail(`get takes {cids} with at most ${maxCids} CIDs`)
      const cids = (v.cids as unknown[]).map((c) => CID.asCID(c) ?? fail('get: not a CID'))
      return { op: 'get', cids }
    }
    case 'peers':
      if (!exactKeys(v, ['op'])) fail('peers takes no arguments')
      return { op: 'peers' }
    default:
      return fail(`unknown op ${JSON.stringify(String(v.op).slice(0, 40))}`)
  }
}

export function encodeResponse(res: ExchangeResponse): Uint8Array {
  if ('blocks' in res) return dagCbor.encode({ blocks: encodeBlocks(res.blocks), more: res.more })
  return dagCbor.encode(res)
}

/** Decode a reply of the kind `op` expects; an error reply becomes an ExchangeError. */
export function decodeResponse(
  data: Uint8Array,
  op: ExchangeRequest['op'],
  maxBytes: number,
): ExchangeResponse {
  const v = decodeCbor(data, maxBytes, 'response')
  const fail = (m: string): never => {
    throw new InvalidMessageError('malformed', `${op} response: ${m}`)
  }
  if (!isMap(v)) return fail('not a map')
  if (isMap(v.error)) {
    const e = v.error
    throw new ExchangeError(`peer refused ${op}: ${String(e.code)}: ${String(e.message).slice(0, 300)}`, {
      details: { code: String(e.code) },
    })
  }
  switch (op) {
    case 'heads': {
      if (!exactKeys(v, ['heads', 'more']) || !Array.isArray(v.heads) || typeof v.more !== 'boolean')
        fail('expected {heads, more}')
      if ((v.heads as unknown[]).length > MAX_HEADS_PER_RESPONSE) fail('too many heads')
      const heads = (v.heads as unknown[]).map((h): HeadInfo => {
        if (!isMap(h) || !exactKeys(h, ['chain', 'seq', 'cid']) || typeof h.chain !== 'string')
          return fail('head must be {chain, seq, cid}')
        const cid = CID.asCID(h.cid)
        if (!cid || !isCount(h.seq, Number.MAX_SAFE_INTEGER)) return fail('head must be {chain, seq, cid}')
        return { chain: h.chain, seq: h.seq, cid }
      })
      return { heads, more: v.more as boolean }
    }
    case 'range':
    case 'get': {
      if (!exactKeys(v, ['blocks', 'more']) || typeof v.more !== 'boolean') fail('expected {blocks, more}')
      return { blocks: decodeBlocks(v.blocks, 100_000, fail), more: v.more as boolean }
    }
    case 'peers': {
      if (!exactKeys(v, ['peers']) || !Array.isArray(v.peers)) fail('expected {peers}')
      const peers = (v.peers as unknown[]).slice(0, 10_000).map((p) => {
        if (!isMap(p) || typeof p.peerId !== 'string' || !Array.isArray(p.addrs))
          return fail('bad peer entry')
        return {
          peerId: p.peerId,
          addrs: (p.addrs as unknown[]).filter((a): a is string => typeof a === 'string').slice(0, 32),
        }
      })
      return { peers }
    }
  }
}
