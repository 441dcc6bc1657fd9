/**
 * The HTTP API: every route defined once (each module declares its own, `routes.ts` composes the one table; the
 * contract is `module.ts`) and served by fastify with request/response schemas, OpenAPI at `/openapi.json`,
 * metrics, request ids and API-key auth; the same definitions drive the typed client the CLI uses. Error codes
 * map to HTTP statuses in one table (`errors.ts`).
 */

// Kept here for callers of the API's errors; the class is the block store's.
export { NotAValueError } from '../dag/errors.js'
export type { ApiFederation } from '../network/api.js'
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
export {
  composeRoutes,
  type Handler,
  type HandlerContext,
  type Handlers,
  type ModuleHandlers,
  type RouteRequest,
  type RouteTable,
  route,
} from './module.js'
export {
  apiRoutes,
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
  type ApiServerOptions,
  createApiServer,
} from './server.js'
