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

/** HTTP status for each error code; one table for the whole API. Unknown codes are 500. */
const STATUS_BY_CODE: Record<string, number> = {
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 400,
  INVALID_JSON: 400,
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
  PAYLOAD_TOO_LARGE: 413,
  BLOCK_TOO_LARGE: 413,
  VALUE_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  STORE_UNAVAILABLE: 503,
  STORE_CLOSED: 503,
  STORE_LOCKED: 503,
  VERIFIER_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  ABORTED: 503,
}

/** Fastify's own error codes, renamed to ours. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_VALIDATION: 'VALIDATION_FAILED',
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
