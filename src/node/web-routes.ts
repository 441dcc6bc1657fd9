/**
 * The node's web page: `GET /` and the files it loads (`GET /web/:file`). Definitions only (typebox): the CLI's
 * client imports them through `api/routes.ts`; the handlers are in `web.ts`.
 */
import { Type } from 'typebox'
import { route } from '../api/module.js'

export const webRoutes = {
  webPage: route({
    id: 'webPage',
    method: 'GET',
    url: '/',
    summary:
      "The node's web page: identity, readiness, peers, chains, accounts and live events (HTML; it reads this API)",
    tags: ['node'],
    auth: false,
    response: Type.String({ description: 'HTML' }),
    responseContentType: 'text/html; charset=utf-8',
  }),
  webAsset: route({
    id: 'webAsset',
    method: 'GET',
    url: '/web/:file',
    summary: "A file of the node's web page (its script and style sheet)",
    tags: ['node'],
    auth: false,
    params: Type.Object({ file: Type.String({ maxLength: 64 }) }),
    response: Type.String({ description: 'JavaScript or CSS' }),
    responseContentType: 'application/octet-stream',
  }),
} as const
