import { IcnError } from '../identity/index.js'

/** Why a gossip message or exchange reply was refused; a metrics label, so the set is fixed. */
export type RejectReason =
  | 'oversized'
  | 'malformed'
  | 'bad_cid'
  | 'bad_signature'
  | 'unknown_author'
  | 'chain'
  | 'not_signed'
  | 'store_unavailable'

/** A message from a peer (gossip or block exchange) failed a check; nothing from it was stored. */
export class InvalidMessageError extends IcnError {
  override readonly name = 'InvalidMessageError'
  constructor(
    readonly reason: RejectReason,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super('INVALID_MESSAGE', message, { details: { reason }, cause: options.cause })
  }
}

/** A peer answered a block-exchange request with an error, or broke the protocol. */
export class ExchangeError extends IcnError {
  override readonly name = 'ExchangeError'
  constructor(message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super('EXCHANGE_FAILED', message, options)
  }
}

/**
 * A federation node closed our connection before it answered anything: it does not list this node (a node of
 * another federation, or an old genesis) or its gater refuses it. Recorded as the reason of a failed re-dial.
 */
export class PeerRefusedError extends IcnError {
  override readonly name = 'PeerRefusedError'
  constructor(peer: string) {
    super(
      'PEER_REFUSED',
      `${peer} closed the connection before answering: it does not accept this node (is it in the same federation, with the same genesis and pre-shared key?)`,
    )
  }
}

/**
 * What went wrong, for a log line or an API field: the error's name, code and message, and its cause's (or, for
 * an AggregateError, its errors'), never "undefined", whatever was thrown.
 */
export function describeError(err: unknown, depth = 0): string {
  if (err === undefined || err === null) return `${String(err)} thrown`
  if (typeof err !== 'object') return String(err)
  const e = err as { name?: unknown; code?: unknown; message?: unknown; cause?: unknown; errors?: unknown }
  const name = typeof e.name === 'string' && e.name !== '' ? e.name : (err.constructor?.name ?? 'Object')
  const code = typeof e.code === 'string' || typeof e.code === 'number' ? ` [${e.code}]` : ''
  let message = typeof e.message === 'string' ? e.message : ''
  if (depth < 3) {
    if (Array.isArray(e.errors) && e.errors.length > 0)
      message += `${message ? ' ' : ''}(${e.errors.map((x) => describeError(x, depth + 1)).join('; ')})`
    else if (e.cause !== undefined && message === '')
      message = `caused by ${describeError(e.cause, depth + 1)}`
  }
  if (message === '' && !(err instanceof Error)) {
    try {
      message = JSON.stringify(err) ?? ''
    } catch {
      // not serialisable: the name says what it was
    }
  }
  return `${name}${code}${message ? `: ${message}` : ''}`
}

/** The node has no federation (started without --genesis), so it has no network. */
export class NoFederationError extends IcnError {
  override readonly name = 'NoFederationError'
  constructor() {
    super('NO_FEDERATION', 'this node runs alone: start it with --genesis FILE to join a federation')
  }
}

/** A libp2p setting (listen or bootstrap multiaddr, pre-shared key file) is wrong. */
export class NetworkConfigError extends IcnError {
  override readonly name = 'NetworkConfigError'
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('INVALID_OPTION', message, options)
  }
}

// ---- node-to-node RPC (rpc.ts) -----------------------------------------------------------------------------

/**
 * An RPC could not reach the node: it is not a node of this federation, the network is not running, it cannot
 * be dialed, or the stream broke before the reply came. `details.reason` says which.
 */
export class PeerUnreachableError extends IcnError {
  override readonly name = 'PeerUnreachableError'
  constructor(
    did: string,
    reason: 'not_a_node' | 'not_started' | 'dial' | 'stream',
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super('PEER_UNREACHABLE', message, { details: { did, reason }, cause: options.cause })
  }
}

/** An RPC got no reply within its timeout. */
export class RpcTimeoutError extends IcnError {
  override readonly name = 'RpcTimeoutError'
  constructor(did: string, protocol: string, timeoutMs: number) {
    super('RPC_TIMEOUT', `${protocol} request to ${did} got no reply within ${timeoutMs} ms`, {
      details: { did, protocol, timeoutMs },
    })
  }
}

/** An RPC message (request or reply) is over the size limit of its protocol; nothing was sent or handled. */
export class MessageTooLargeError extends IcnError {
  override readonly name = 'MessageTooLargeError'
  constructor(protocol: string, bytes: number, limit: number, what: 'request' | 'reply' = 'request') {
    super('MESSAGE_TOO_LARGE', `${protocol} ${what} is ${bytes} bytes, over the limit of ${limit}`, {
      details: { protocol, bytes, limit, what },
    })
  }
}

/** The remote node has no handler for the protocol (or no RPC at all). */
export class UnknownProtocolError extends IcnError {
  override readonly name = 'UnknownProtocolError'
  constructor(protocol: string, did?: string) {
    super('UNKNOWN_PROTOCOL', `${did ?? 'this node'} has no handler for ${protocol}`, {
      details: { protocol, ...(did ? { did } : {}) },
    })
  }
}

/** An RPC frame is not what the protocol allows (not DAG-CBOR, too deep, wrong envelope), or cannot be encoded. */
export class RpcMalformedError extends IcnError {
  override readonly name = 'RpcMalformedError'
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('RPC_MALFORMED', message, options)
  }
}

/** A handler was already registered for this protocol, or the protocol name is not allowed. */
export class RpcHandlerError extends IcnError {
  override readonly name = 'RpcHandlerError'
  constructor(protocol: string, message: string) {
    super('RPC_HANDLER_INVALID', message, { details: { protocol } })
  }
}

/**
 * The remote handler refused the request with a typed error: `code`, `message` and `details` are the remote's
 * own (INSUFFICIENT_MANA, RECORD_REPLAYED, …), so callers match on `code` as if the call were local. A remote
 * handler that failed in any other way arrives as code `RPC_REMOTE_ERROR`, without the remote's internals.
 */
export class RemoteError extends IcnError {
  override readonly name = 'RemoteError'
  readonly remote = true
  constructor(
    code: string,
    message: string,
    readonly from: { did: string; protocol: string },
    details?: Record<string, unknown>,
  ) {
    super(code, message, details === undefined ? {} : { details })
  }
}
