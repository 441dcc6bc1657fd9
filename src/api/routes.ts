import { type Static, Type } from 'typebox'
// Each module's routes.ts directly: the CLI's client loads this table, and dag/index.js would bring both store
// backends with it, network/index.js libp2p.
import { dagRoutes } from '../dag/routes.js'
import { economicsRoutes } from '../economics/routes.js'
import { networkRoutes } from '../network/routes.js'
import { nodeRoutes } from '../node/routes.js'
import { webRoutes } from '../node/web-routes.js'
import { composeRoutes, route } from './module.js'

export { MAX_IMPORT_BYTES } from '../dag/routes.js'
export {
  type BodyOf,
  type ParamsOf,
  type QueryOf,
  type ResponseOf,
  type RouteDef,
  route,
} from './module.js'

/** The body of every error reply. */
export const ErrorBody = Type.Object(
  {
    code: Type.String({ description: 'Stable machine-readable error code, e.g. INVALID_SIGNATURE' }),
    message: Type.String(),
    requestId: Type.Optional(Type.String()),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { $id: 'Error' },
)
export type ErrorBody = Static<typeof ErrorBody>

/** The API's own routes, served by the server itself (not by a module's handlers). */
export const apiRoutes = {
  openapi: route({
    id: 'openapi',
    method: 'GET',
    url: '/openapi.json',
    summary: 'This API as an OpenAPI 3 document',
    tags: ['node'],
    auth: false,
    response: Type.Record(Type.String(), Type.Unknown()),
    hidden: true,
  }),
} as const

/**
 * Every HTTP route, defined once: each module declares its own (`<module>/routes.ts`, see `module.ts`) and this
 * composes them into the one typed table. The server registers these, the OpenAPI document is generated from
 * them and the CLI's typed client calls them.
 */
export const routes = composeRoutes(
  nodeRoutes,
  apiRoutes,
  networkRoutes,
  dagRoutes,
  economicsRoutes,
  webRoutes,
)

export type Routes = typeof routes
export type RouteId = keyof Routes
