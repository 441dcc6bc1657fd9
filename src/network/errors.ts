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
