/**
 * The HTTP API: every route defined once (`routes.ts`) and served by fastify with request/response schemas,
 * OpenAPI at `/openapi.json`, metrics, request ids and API-key auth; the same definitions drive the typed
 * client the CLI uses. Error codes map to HTTP statuses in one table (`errors.ts`).
 */

export {
  MAX_CAR_HEADER_BYTES,
  MAX_CONCURRENT_IMPORTS,
  type ReadCarUploadOptions,
  readCarUpload,
} from './car-upload.js'
export { ApiClient, type ApiClientOptions, type CallInput } from './client.js'
export {
  ApiError,
  BadRequestError,
  HTTP_STATUS_BY_CODE,
  ImportBusyError,
  InvalidJsonError,
  InvalidUrlError,
  MalformedHttpError,
  MethodNotAllowedError,
  PayloadTooLargeError,
  RequestHeadersTooLargeError,
  RequestTimeoutError,
  RouteNotFoundError,
  ShuttingDownError,
  toHttpError,
  UnauthorizedError,
  UnsupportedMediaTypeError,
} from './errors.js'
export { NotAValueError } from './handlers.js'
export {
  type BodyOf,
  ErrorBody,
  MAX_IMPORT_BYTES,
  type ParamsOf,
  type QueryOf,
  type ResponseOf,
  type RouteDef,
  type RouteId,
  type Routes,
  routes,
} from './routes.js'
export {
  type ApiComponents,
  type ApiFederation,
  type ApiServerOptions,
  createApiServer,
} from './server.js'
