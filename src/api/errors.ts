import { IcnError } from '../identity/index.js'

/** The request lacks the operator's API key, or carries a wrong one. */
export class UnauthorizedError extends IcnError {
  override readonly name = 'UnauthorizedError'
  constructor(message = 'missing or wrong API key (send Authorization: Bearer <key>)') {
    super('UNAUTHORIZED', message)
  }
}

/** The request is malformed in a way no more specific error describes. */
export class BadRequestError extends IcnError {
  override readonly name = 'BadRequestError'
  constructor(message: string, details?: Record<string, unknown>) {
    super('BAD_REQUEST', message, details ? { details } : {})
  }
}

/** The body is not valid JSON. */
export class InvalidJsonError extends IcnError {
  override readonly name = 'InvalidJsonError'
  constructor(message: string, details?: Record<string, unknown>) {
    super('INVALID_JSON', `body is not valid JSON: ${message}`, details ? { details } : {})
  }
}

/** The path exists, but not with this HTTP method; `allow` lists the methods it has. */
export class MethodNotAllowedError extends IcnError {
  override readonly name = 'MethodNotAllowedError'
  constructor(
    method: string,
    path: string,
    readonly allow: string[],
  ) {
    super('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path} (allowed: ${allow.join(', ')})`, {
      details: { allow },
    })
  }
}

/** No route has this path. */
export class RouteNotFoundError extends IcnError {
  override readonly name = 'RouteNotFoundError'
  constructor(method: string, path: string) {
    super('ROUTE_NOT_FOUND', `no route ${method} ${path}`)
  }
}

/** The request URL is not valid (bad percent-encoding). */
export class InvalidUrlError extends IcnError {
  override readonly name = 'InvalidUrlError'
  constructor(url: string) {
    super('INVALID_URL', `the URL ${JSON.stringify(url.slice(0, 200))} is not valid (bad percent-encoding?)`)
  }
}

/** The body's content type (or content encoding) is not one the route takes. */
export class UnsupportedMediaTypeError extends IcnError {
  override readonly name = 'UnsupportedMediaTypeError'
  constructor(message: string) {
    super('UNSUPPORTED_MEDIA_TYPE', message)
  }
}

/** The request line and headers together are larger than the server reads (Node's max header size). */
export class RequestHeadersTooLargeError extends IcnError {
  override readonly name = 'RequestHeadersTooLargeError'
  constructor(limit: number) {
    super('REQUEST_HEADERS_TOO_LARGE', `the request line and headers exceed ${limit} bytes`, {
      details: { limit },
    })
  }
}

/** The bytes on the connection are not a valid HTTP/1.1 request (e.g. a wrong Content-Length). */
export class MalformedHttpError extends IcnError {
  override readonly name = 'MalformedHttpError'
  constructor(reason: string) {
    super('BAD_REQUEST', `malformed HTTP request: ${reason}`)
  }
}

/** The client did not send the whole request within the server's request timeout. */
export class RequestTimeoutError extends IcnError {
  override readonly name = 'RequestTimeoutError'
  constructor() {
    super('REQUEST_TIMEOUT', 'the request was not received in time')
  }
}

/** The server is closing and takes no new requests. */
export class ShuttingDownError extends IcnError {
  override readonly name = 'ShuttingDownError'
  constructor() {
    super('SHUTTING_DOWN', 'the node is shutting down; retry on another node or later')
  }
}

/** The request body is over the route's limit. */
export class PayloadTooLargeError extends IcnError {
  override readonly name = 'PayloadTooLargeError'
  constructor(limit: number, size: number) {
    super('PAYLOAD_TOO_LARGE', `the body is over the limit of ${limit} bytes (at least ${size})`, {
      details: { limit, size },
    })
  }
}

/** As many CAR imports as the node runs at once are already running; retry after `retryAfterSeconds`. */
export class ImportBusyError extends IcnError {
  override readonly name = 'ImportBusyError'
  constructor(
    readonly limit: number,
    readonly retryAfterSeconds = 5,
  ) {
    super('IMPORT_BUSY', `${limit} CAR imports are already running; retry later`, { details: { limit } })
  }
}

/** An HTTP call from the client failed; carries the server's `{ code, message }`. */
export class ApiError extends IcnError {
  override readonly name = 'ApiError'
  constructor(
    readonly status: number,
    code: string,
    message: string,
    details?: Record<string, unknown>,
  ) {
    super(code, message, details ? { details } : {})
  }
}

/**
 * HTTP status for each error code; one table for the whole API (docs/protocol.md shows it, and a test checks
 * the two agree). Unknown codes are 500.
 */
export const HTTP_STATUS_BY_CODE: Readonly<Record<string, number>> = {
  BAD_REQUEST: 400,
  INVALID_URL: 400,
  VALIDATION_FAILED: 400,
  INVALID_JSON: 400,
  VALUE_TOO_DEEP: 400,
  UNSAFE_INTEGER: 400,
  INVALID_UNICODE: 400,
  MALFORMED_BLOCK: 400,
  INVALID_CID: 400,
  CID_MISMATCH: 400,
  INVALID_SIGNATURE: 400,
  CHAIN_GAP: 409,
  PREV_MISMATCH: 409,
  CHAIN_CONFLICT: 409,
  UNANCHORED_CHUNK: 400,
  INVALID_CAR: 400,
  INCOMPLETE_VALUE: 422,
  NOT_A_VALUE: 422,
  UNAUTHORIZED: 401,
  UNKNOWN_AUTHOR: 403,
  NOT_FOUND: 404,
  NO_FEDERATION: 404,
  ROUTE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  PAYLOAD_TOO_LARGE: 413,
  BLOCK_TOO_LARGE: 413,
  VALUE_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  REQUEST_HEADERS_TOO_LARGE: 431,
  STORE_UNAVAILABLE: 503,
  STORE_CLOSED: 503,
  STORE_LOCKED: 503,
  VERIFIER_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  ABORTED: 503,
  IMPORT_BUSY: 503,
  // the ledger (src/economics)
  MALFORMED_RECORD: 400,
  INVALID_RECORD_SIGNATURE: 400,
  INVALID_AMOUNT: 400,
  INVALID_INSTANT: 400,
  SELF_TRANSFER: 400,
  WRONG_FEDERATION: 400,
  RECORD_EXPIRED: 400,
  RECORD_TTL_TOO_LONG: 400,
  NOT_A_MEMBER: 403,
  UNKNOWN_ACCOUNT: 404,
  HOLD_NOT_FOUND: 404,
  NO_LEDGER: 404,
  RECORD_REPLAYED: 409,
  INSUFFICIENT_MANA: 409,
  WRONG_HOME: 409,
  HOME_UNREACHABLE: 503,
}
const STATUS_BY_CODE = HTTP_STATUS_BY_CODE

/** Fastify's own error codes, renamed to ours. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_VALIDATION: 'VALIDATION_FAILED',
  FST_ERR_BAD_URL: 'INVALID_URL',
  FST_ERR_MAX_PARAM_LENGTH: 'INVALID_URL',
}

/** Map any thrown value to the HTTP status and `{ code, message, details }` the API answers with. */
export function toHttpError(err: unknown): {
  status: number
  code: string
  message: string
  details?: Record<string, unknown>
} {
  const e = err as { code?: string; message?: string; details?: Record<string, unknown>; statusCode?: number }
  let code = typeof e?.code === 'string' ? e.code : 'INTERNAL'
  if (FASTIFY_CODES[code]) code = FASTIFY_CODES[code]!
  else if (code.startsWith('FST_') || (e?.statusCode === 400 && !STATUS_BY_CODE[code])) code = 'BAD_REQUEST'
  if (err instanceof SyntaxError && code === 'INTERNAL') code = 'INVALID_JSON'
  const status = STATUS_BY_CODE[code] ?? 500
  const message =
    status === 500 ? 'internal error (see the node log for this request id)' : String(e?.message ?? code)
  return { status, code, message, ...(status !== 500 && e?.details ? { details: e.details } : {}) }
}
