import { IcnError } from '../identity/index.js'

/** A block's encoded bytes exceed the block size limit. */
export class BlockTooLargeError extends IcnError {
  override readonly name = 'BlockTooLargeError'
  constructor(size: number, limit: number) {
    super('BLOCK_TOO_LARGE', `block is ${size} bytes, over the limit of ${limit}`, {
      details: { size, limit },
    })
  }
}

/** The CID given for a block does not match the hash of its bytes. */
export class CidMismatchError extends IcnError {
  override readonly name = 'CidMismatchError'
  constructor(expected: string, actual: string) {
    super('CID_MISMATCH', `block bytes hash to ${actual}, not ${expected}`, { details: { expected, actual } })
  }
}

/** A CID string or bytes could not be parsed, or uses a codec or hash the store does not accept. */
export class InvalidCidError extends IcnError {
  override readonly name = 'InvalidCidError'
  constructor(message: string, details?: Record<string, unknown>) {
    super('INVALID_CID', message, { details })
  }
}

/** The bytes are not a well-formed block: undecodable, non-canonical DAG-CBOR, or fields of the wrong shape. */
export class MalformedBlockError extends IcnError {
  override readonly name = 'MalformedBlockError'
  constructor(message: string, details?: Record<string, unknown>) {
    super('MALFORMED_BLOCK', message, { details })
  }
}

/** A signed block's signature does not verify for its author under its record type's domain tag. */
export class InvalidSignatureError extends IcnError {
  override readonly name = 'InvalidSignatureError'
  constructor(cid: string, author: string) {
    super('INVALID_SIGNATURE', `signature of block ${cid} does not verify for ${author}`, {
      details: { cid, author },
    })
  }
}

/** A block's predecessor (same chain, sequence - 1) is not known to the store. */
export class ChainGapError extends IcnError {
  override readonly name = 'ChainGapError'
  constructor(chain: string, seq: number) {
    super('CHAIN_GAP', `block ${seq} of chain ${chain} arrived before block ${seq - 1}`, {
      details: { chain, seq },
    })
  }
}

/** A block's `prev` is not the CID the store holds for the previous position of its chain. */
export class PrevMismatchError extends IcnError {
  override readonly name = 'PrevMismatchError'
  constructor(chain: string, seq: number, expected: string, actual: string) {
    super(
      'PREV_MISMATCH',
      `block ${seq} of chain ${chain} links prev ${actual}, but block ${seq - 1} is ${expected}`,
      {
        details: { chain, seq, expected, actual },
      },
    )
  }
}

/** A raw chunk was offered that no signed block in the store (or in the same batch) links to. */
export class UnanchoredChunkError extends IcnError {
  override readonly name = 'UnanchoredChunkError'
  constructor(cid: string) {
    super('UNANCHORED_CHUNK', `chunk ${cid} is not linked from any signed block the store holds`, {
      details: { cid },
    })
  }
}

/** A signed block's author is not one the caller accepts (e.g. not a node of the federation). */
export class UnknownAuthorError extends IcnError {
  override readonly name = 'UnknownAuthorError'
  constructor(cid: string, author: string) {
    super('UNKNOWN_AUTHOR', `block ${cid} is by ${author.slice(0, 100)}, who may not write here`, {
      details: { cid, author },
    })
  }
}

/** The block (or value) asked for is not in the store. */
export class BlockNotFoundError extends IcnError {
  override readonly name = 'BlockNotFoundError'
  constructor(cid: string) {
    super('NOT_FOUND', `block ${cid} not found`, { details: { cid } })
  }
}

/** The store cannot be reached or used right now (database down, connection lost). Retry later. */
export class StoreUnavailableError extends IcnError {
  override readonly name = 'StoreUnavailableError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORE_UNAVAILABLE', message, options)
  }
}

/** The configured store could not be opened at start (bad URL, locked or unreadable file, failed migration). */
export class StoreOpenError extends IcnError {
  override readonly name = 'StoreOpenError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORE_OPEN_FAILED', message, options)
  }
}

/**
 * Another process holds the store: a second node on the same SQLite data folder, or on the same PostgreSQL
 * database with the same node identity. Stop the other node first.
 */
export class StoreLockedError extends IcnError {
  override readonly name = 'StoreLockedError'
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('STORE_LOCKED', message, options)
  }
}

/** The store was used after `close()` or before `open()`. */
export class StoreClosedError extends IcnError {
  override readonly name = 'StoreClosedError'
  constructor() {
    super('STORE_CLOSED', 'block store is not open')
  }
}

/** The operation's AbortSignal fired; nothing was written. */
export class AbortedError extends IcnError {
  override readonly name = 'AbortError'
  constructor(message = 'operation aborted') {
    super('ABORTED', message)
  }
}

/** A CAR file is corrupt, truncated, or holds a block that fails validation. Nothing was imported. */
export class InvalidCarError extends IcnError {
  override readonly name = 'InvalidCarError'
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('INVALID_CAR', message, options)
  }
}

/** A stored value's chunks do not reassemble (missing chunk, wrong size). */
export class IncompleteValueError extends IcnError {
  override readonly name = 'IncompleteValueError'
  constructor(cid: string, message: string) {
    super('INCOMPLETE_VALUE', `value of block ${cid}: ${message}`, { details: { cid } })
  }
}

/** Throw AbortedError if the signal has fired. */
export function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new AbortedError()
}

/** The node's own chain position was taken by another block signed with the same key (two writers, one key). */
export class ChainConflictError extends IcnError {
  override readonly name = 'ChainConflictError'
  constructor(chain: string, seq: number) {
    super(
      'CHAIN_CONFLICT',
      `chain ${chain} position ${seq} is already taken by another writer using this key`,
      {
        details: { chain, seq },
      },
    )
  }
}

/** The CID names a block that is not an `icn.value/v1` record. */
export class NotAValueError extends IcnError {
  override readonly name = 'NotAValueError'
  constructor(cid: string) {
    super('NOT_A_VALUE', `block ${cid} is not an icn.value/v1 record`, { details: { cid } })
  }
}

/**
 * A statement sent through the store's SQL door (`BlockStore.sql()`) failed for a reason other than the
 * database being unavailable: bad SQL, a constraint, a type. `details.driverCode` is the driver's code.
 */
export class SqlError extends IcnError {
  override readonly name = 'SqlError'
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super('SQL_FAILED', message, options)
  }
}
