/**
 * The node's own HTTP routes: liveness, readiness, metrics, identity and the event stream. Definitions only
 * (typebox): the CLI's client imports them through `api/routes.ts`; the handlers are in `api.ts`.
 */
import { Type } from 'typebox'
import { route } from '../api/module.js'

const ComponentStatus = Type.Object({ ready: Type.Boolean(), detail: Type.Optional(Type.String()) })

export const nodeRoutes = {
  health: route({
    id: 'health',
    method: 'GET',
    url: '/health',
    summary: 'Liveness: the process is up and serving HTTP',
    tags: ['node'],
    auth: false,
    response: Type.Object({ status: Type.Literal('ok') }),
  }),
  ready: route({
    id: 'ready',
    method: 'GET',
    url: '/ready',
    summary:
      'Readiness: 200 when every component the node depends on is usable, 503 with per-component detail otherwise',
    tags: ['node'],
    auth: false,
    response: Type.Object({ ready: Type.Boolean(), components: Type.Record(Type.String(), ComponentStatus) }),
    alsoStatuses: [503],
  }),
  metrics: route({
    id: 'metrics',
    method: 'GET',
    url: '/metrics',
    summary: 'Prometheus metrics (text exposition format)',
    tags: ['node'],
    auth: false,
    response: Type.String({ description: 'binary body' }),
    responseContentType: 'text/plain; version=0.0.4',
  }),
  getNode: route({
    id: 'getNode',
    method: 'GET',
    url: '/v1/node',
    summary: "The node's identity, version, store and uptime",
    tags: ['node'],
    auth: false,
    response: Type.Object({
      did: Type.String(),
      version: Type.String(),
      store: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')]),
      uptimeSeconds: Type.Number(),
      startedAt: Type.String({ format: 'date-time' }),
      chain: Type.String({ description: "Id of the node's own chain" }),
      head: Type.Union([Type.Object({ seq: Type.Integer(), cid: Type.String() }), Type.Null()]),
      peerId: Type.Union([
        Type.String({ description: 'libp2p peer id (same Ed25519 key as the DID)' }),
        Type.Null(),
      ]),
      listenAddrs: Type.Array(Type.String(), {
        description: 'libp2p listen multiaddrs (empty without a federation)',
      }),
      federation: Type.Union([Type.String({ description: 'Federation id (genesis CID)' }), Type.Null()]),
    }),
  }),
  events: route({
    id: 'events',
    method: 'GET',
    url: '/v1/events',
    summary:
      'Server-Sent Events: block stored (cid, chain, seq, origin), evidence found, peer connected/disconnected',
    tags: ['node'],
    auth: false,
    response: Type.Unknown(),
    responseContentType: 'text/event-stream',
  }),
} as const
