import { CID } from 'multiformats/cid'
import { IcnError } from '../identity/index.js'
import { MalformedBlockError } from './errors.js'

/**
 * Most levels of maps and arrays a block may nest, counting the block's own top-level map as level 1 (so a
 * record's `body` map is level 2, and an `icn.value/v1` record's inline value opens at level 3). CIDs (tag 42)
 * and byte strings are leaves. A protocol constant: every node applies it before any recursive decode or encode,
 * so whether a block is valid never depends on how much stack a node happens to have. Every codec the node uses
 * (DAG-CBOR, DAG-JSON, JSON) handles many times this depth on the smallest stack the node runs with.
 */
export const MAX_BLOCK_DEPTH = 256

/**
 * Most levels a value (`POST /v1/dag/blocks`, `ChainWriter.appendValue`) may nest: a scalar is depth 0, `[]` and
 * `{}` depth 1, `[[1]]` depth 2. Stored inline, a value at this depth reaches level 130 of its block.
 */
export const MAX_VALUE_DEPTH = 128

/** Largest integer magnitude a block or value may hold: 2^53 − 1, what every node reads back exactly. */
export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER

/** A value or block nests maps and arrays deeper than the protocol's limit. */
export class ValueTooDeepError extends IcnError {
  override readonly name = 'ValueTooDeepError'
  constructor(what: string, limit: number) {
    super('VALUE_TOO_DEEP', `${what} nests maps and arrays deeper than the limit of ${limit} levels`, {
      details: { limit },
    })
  }
}

/** An integer outside ±(2^53 − 1), which would not be read back exactly; refused rather than rounded. */
export class UnsafeIntegerError extends IcnError {
  override readonly name = 'UnsafeIntegerError'
  constructor(what: string, text: string) {
    super(
      'UNSAFE_INTEGER',
      `${what} holds the integer ${text.length > 40 ? `${text.slice(0, 40)}…` : text}, outside ±(2^53 − 1): ` +
        'it would not be kept exactly (send it as a string)',
      { details: { integer: text.slice(0, 100) } },
    )
  }
}

/** A string is not valid Unicode: a lone surrogate, or bytes that are not UTF-8. Refused, not replaced. */
export class InvalidUnicodeError extends IcnError {
  override readonly name = 'InvalidUnicodeError'
  constructor(message: string) {
    super('INVALID_UNICODE', message)
  }
}

/** `String.prototype.isWellFormed` (Node 20+; not yet in the ES2023 lib types): no lone surrogate. */
export function isWellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed()
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Check raw DAG-CBOR bytes against the block rules that a recursive decoder could not apply safely, without
 * recursion (one pass over the item headers, an explicit count of open containers): nesting at most `maxDepth`
 * levels (`VALUE_TOO_DEEP`), integers within ±(2^53 − 1) (`UNSAFE_INTEGER`), text strings valid UTF-8 and no
 * indefinite-length items (`MALFORMED_BLOCK`). Other defects (truncation, trailing bytes, unknown tags or simple
 * values) are left to the decoder, which after this pass can never recurse deeper than `maxDepth`.
 */
export function checkCborLimits(bytes: Uint8Array, maxDepth: number = MAX_BLOCK_DEPTH, what = 'block'): void {
  // remaining[i]: items still to read in the i-th open container; depth = remaining.length.
  const remaining: number[] = []
  let pos = 0
  let top = 1 // items still to read at the top level: exactly one
  while (pos < bytes.length) {
    const ib = bytes[pos++]!
    const major = ib >> 5
    const info = ib & 31
    if (info >= 28) {
      if (info === 31 && major >= 2 && major <= 5)
        throw new MalformedBlockError(
          `${what} holds an indefinite-length item, which DAG-CBOR does not allow`,
        )
      return // reserved additional information, or a break: the decoder refuses it
    }
    const size = info < 24 ? 0 : 1 << (info - 24) // bytes of the argument: 0, 1, 2, 4 or 8
    if (pos + size > bytes.length) return // truncated: the decoder says so
    let arg = info < 24 ? info : 0
    for (let i = 0; i < size; i++) arg = arg * 256 + bytes[pos + i]! // exact below 2^53, all the checks need
    if (major <= 1 && size === 8) {
      let magnitude = 0n
      for (let i = 0; i < 8; i++) magnitude = (magnitude << 8n) | BigInt(bytes[pos + i]!)
      if (major === 1) magnitude += 1n // major type 1 holds −1 − n
      if (magnitude > BigInt(MAX_SAFE_INTEGER))
        throw new UnsafeIntegerError(what, `${major === 1 ? '-' : ''}${magnitude}`)
    }
    pos += size

    if (major === 6) continue // a tag (42: CID) wraps the next item, which takes its place
    // This item fills one slot of the innermost open container (or the top level).
    if (remaining.length === 0) top--
    else remaining[remaining.length - 1]!--
    if (major === 2 || major === 3) {
      if (arg > bytes.length - pos) return // truncated
      if (major === 3 && !isAscii(bytes, pos, pos + arg)) {
        try {
          utf8.decode(bytes.subarray(pos, pos + arg))
        } catch {
          throw new MalformedBlockError(`${what} holds a text string that is not valid UTF-8`)
        }
      }
      pos += arg
    } else if (major === 4 || major === 5) {
      if (remaining.length + 1 > maxDepth) throw new ValueTooDeepError(what, maxDepth)
      // Each item takes at least one byte: a count beyond the bytes left is truncation, for the decoder.
      const items = major === 5 ? arg * 2 : arg
      if (items > bytes.length - pos) return
      if (items > 0) remaining.push(items)
    }
    while (remaining.length > 0 && remaining[remaining.length - 1] === 0) remaining.pop()
    if (remaining.length === 0 && top === 0) return // the whole item: trailing bytes are the decoder's to refuse
  }
}

/** Whether bytes[from, to) are all ASCII (valid UTF-8 without a decoder call, which costs more than this loop). */
function isAscii(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i]! >= 0x80) return false
  return true
}

/**
 * Check a JavaScript value before it is encoded, without recursion: maps and arrays nest at most `maxDepth`
 * levels (`VALUE_TOO_DEEP`), strings and map keys are well-formed Unicode (`INVALID_UNICODE`), bigints are within
 * ±(2^53 − 1) (`UNSAFE_INTEGER`). Numbers are left as they are (see docs/protocol.md on numbers); CIDs and byte
 * arrays are leaves. Stops after `maxNodes` containers and leaves (a value that shares sub-objects could
 * otherwise take exponential time; the encoder refuses such a value anyway by its size).
 */
export function checkValueLimits(
  value: unknown,
  maxDepth: number = MAX_VALUE_DEPTH,
  what = 'value',
  maxNodes = 64 * 1024 * 1024,
): void {
  // Two parallel stacks (value, depth) rather than one of {v, depth} objects: this runs on every block body the
  // node writes and every JSON body it takes, so it allocates as little as it can.
  const values: unknown[] = [value]
  const depths: number[] = [0]
  let nodes = 0
  while (values.length > 0) {
    const v = values.pop()
    const depth = depths.pop()!
    if (++nodes > maxNodes) throw new MalformedBlockError(`${what} has more than ${maxNodes} elements`)
    if (typeof v === 'string') {
      if (!isWellFormed(v)) throw new InvalidUnicodeError(`${what} holds a string with a lone surrogate`)
      continue
    }
    if (typeof v === 'bigint') {
      if (v > BigInt(MAX_SAFE_INTEGER) || v < -BigInt(MAX_SAFE_INTEGER))
        throw new UnsafeIntegerError(what, String(v))
      continue
    }
    if (v === null || typeof v !== 'object' || v instanceof Uint8Array || CID.asCID(v)) continue
    if (depth + 1 > maxDepth) throw new ValueTooDeepError(what, maxDepth)
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) {
        values.push(v[i])
        depths.push(depth + 1)
      }
      continue
    }
    const map = v as Record<string, unknown>
    for (const k of Object.keys(map)) {
      if (!isWellFormed(k)) throw new InvalidUnicodeError(`${what} holds a map key with a lone surrogate`)
      values.push(map[k])
      depths.push(depth + 1)
    }
  }
}
