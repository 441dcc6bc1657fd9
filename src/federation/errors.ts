import { IcnError } from '../identity/index.js'

/**
 * A federation parameter is unknown, not an integer, or outside its bounds. `details` holds `name` and `value`,
 * and for a known parameter its `minimum` and `maximum`.
 */
export class InvalidParameterError extends IcnError {
  static readonly code = 'INVALID_PARAMETER'
  override readonly name = 'InvalidParameterError'
  constructor(
    message: string,
    details: { name: string; value: unknown; minimum?: number; maximum?: number },
  ) {
    super(InvalidParameterError.code, message, { details })
  }
}

/** A genesis (its input, block, or file) is not a valid federation genesis; the message says what is wrong. */
export class InvalidGenesisError extends IcnError {
  static readonly code = 'INVALID_GENESIS'
  override readonly name = 'InvalidGenesisError'
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(InvalidGenesisError.code, message, options)
  }
}

/** The genesis file to read does not exist. */
export class GenesisNotFoundError extends IcnError {
  static readonly code = 'GENESIS_NOT_FOUND'
  override readonly name = 'GenesisNotFoundError'
  constructor(path: string) {
    super(GenesisNotFoundError.code, `no genesis file at ${path}`, { details: { path } })
  }
}

/** The genesis file to write already exists (pass `force` to replace it). */
export class GenesisExistsError extends IcnError {
  static readonly code = 'GENESIS_EXISTS'
  override readonly name = 'GenesisExistsError'
  constructor(path: string) {
    super(GenesisExistsError.code, `${path} already exists; it is not overwritten without force`, {
      details: { path },
    })
  }
}
