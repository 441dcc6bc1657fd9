import { type Static, type TSchema, Type } from 'typebox'

/**
 * Every HTTP route, defined once: the server registers these, the OpenAPI document is generated from them and
 * the CLI's typed client calls them. Binary bodies and replies are described by `requestContentType` and
 * `responseContentType`; JSON ones by schemas.
 */
export interface RouteDef<
  P extends TSchema = TSchema,
  Q extends TSchema = TSchema,
  B extends TSchema = TSchema,
  R extends TSchema = TSchema,
> {
  id: string
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  url: string
  summary: string
  tags: string[]
  /** Needs the operator's API key (`Authorization: Bearer …`). */
  auth: boolean
  params?: P
  querystring?: Q
  body?: B
  /** Schema of the success reply (JSON routes). */
  response: R
  /** Status of the success reply. */
  status?: number
  /** Other statuses whose body is the success schema rather than an error (e.g. 503 from /ready). */
  alsoStatuses?: number[]
  /** Non-JSON request body (e.g. a CAR file). */
  requestContentType?: string
  /** Non-JSON success reply (e.g. a CAR stream, Prometheus text). */
  responseContentType?: string
  /** Largest accepted body, in bytes. */
  bodyLimit?: number
  /** Left out of the OpenAPI document. */
  hidden?: boolean
}

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

// No maxLength in the schemas: the route refuses a CID over 200 characters as INVALID_CID, not as a schema error.
const CidParam = Type.Object({
  cid: Type.String({ description: 'CIDv1 of the block (at most 200 characters)' }),
})
const Bytes = Type.String({ description: 'binary body' })

const ComponentStatus = Type.Object({ ready: Type.Boolean(), detail: Type.Optional(Type.String()) })
const Head = Type.Object({
  chain: Type.String(),
  author: Type.String(),
  seq: Type.Integer(),
  cid: Type.String(),
})

/** Largest CAR `POST /v1/dag/import` takes, bytes (256 MiB); larger ones are 413 PAYLOAD_TOO_LARGE. */
export const MAX_IMPORT_BYTES = 256 * 1024 * 1024

function route<P extends TSchema, Q extends TSchema, B extends TSchema, R extends TSchema>(
  def: RouteDef<P, Q, B, R>,
): RouteDef<P, Q, B, R> {
  return def
}

export const routes = {
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
    response: Bytes,
    responseContentType: 'text/plain; version=0.0.4',
  }),
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
  getFederation: route({
    id: 'getFederation',
    method: 'GET',
    url: '/v1/federation',
    summary: 'The federation this node belongs to: id (genesis CID), name, members, nodes and parameters',
    tags: ['federation'],
    auth: false,
    response: Type.Object({
      id: Type.String(),
      name: Type.String(),
      founder: Type.String(),
      members: Type.Array(Type.String()),
      nodes: Type.Array(Type.String()),
      parameters: Type.Record(Type.String(), Type.Integer()),
    }),
  }),
  getPeers: route({
    id: 'getPeers',
    method: 'GET',
    url: '/v1/peers',
    summary: "The federation's other nodes as this node sees them: connection, RTT, traffic, gossip score",
    tags: ['federation'],
    auth: false,
    response: Type.Object({
      peers: Type.Array(
        Type.Object({
          peerId: Type.String(),
          did: Type.String(),
          connected: Type.Boolean(),
          connectedSince: Type.Optional(Type.String({ format: 'date-time' })),
          lastSeen: Type.Optional(Type.String({ format: 'date-time' })),
          rttMs: Type.Optional(
            Type.Number({ description: 'Round-trip time of the last ping (the first is sent on connect)' }),
          ),
          blocksReceived: Type.Integer({
            description: 'Blocks received from it, by gossip and block exchange',
          }),
          blocksSent: Type.Integer({
            description:
              "Blocks sent to it: this node's own blocks announced to it by gossip, and blocks served to it by block exchange",
          }),
          score: Type.Number({ description: 'Gossipsub peer score; negative after invalid messages' }),
          misbehaviour: Type.Optional(
            Type.Integer({
              description:
                'Protocol violations seen from it on direct streams (block exchange, RPC): malformed or oversized frames',
            }),
          ),
          addrs: Type.Array(Type.String()),
          dialFailures: Type.Integer({
            description:
              'Failed dials in a row, a connection it closed before answering counted as one (0 once it answers)',
          }),
          lastDialError: Type.Optional(
            Type.String({ description: "Why the last dial failed: the error's name, code and message" }),
          ),
          refused: Type.Boolean({
            description:
              'The last failures were refusals (another federation, genesis or pre-shared key): re-dials back off up to 10 min',
          }),
          nextDialAt: Type.Optional(Type.String({ format: 'date-time' })),
        }),
      ),
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
  putValue: route({
    id: 'putValue',
    method: 'POST',
    url: '/v1/dag/blocks',
    summary: "Store a JSON value as a signed block on the node's chain (split into chunks if large)",
    tags: ['dag'],
    auth: true,
    status: 201,
    body: Type.Object(
      { value: Type.Unknown({ description: 'Any JSON value' }) },
      { additionalProperties: false },
    ),
    response: Type.Object({ cid: Type.String(), seq: Type.Integer(), chunks: Type.Integer() }),
    bodyLimit: 32 * 1024 * 1024,
  }),
  getBlock: route({
    id: 'getBlock',
    method: 'GET',
    url: '/v1/dag/blocks/:cid',
    summary:
      'A block: its DAG-CBOR bytes (application/vnd.ipld.dag-cbor; raw chunks as application/vnd.ipld.raw), or as JSON with Accept: application/json or ?format=json',
    tags: ['dag'],
    auth: false,
    params: CidParam,
    querystring: Type.Object({
      format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('cbor')])),
    }),
    response: Type.Object({
      cid: Type.String(),
      kind: Type.Union([Type.Literal('signed'), Type.Literal('raw')]),
      size: Type.Integer(),
      block: Type.Unknown({ description: 'The record in DAG-JSON form (signed blocks)' }),
      bytesBase64: Type.Optional(Type.String({ description: 'The bytes (raw chunks)' })),
    }),
  }),
  getValue: route({
    id: 'getValue',
    method: 'GET',
    url: '/v1/dag/values/:cid',
    summary: 'The value an icn.value/v1 block holds, reassembled from its chunks',
    tags: ['dag'],
    auth: false,
    params: CidParam,
    response: Type.Object({
      cid: Type.String(),
      author: Type.String(),
      seq: Type.Integer(),
      value: Type.Unknown(),
    }),
  }),
  exportCar: route({
    id: 'exportCar',
    method: 'GET',
    url: '/v1/dag/export',
    summary: 'Every block (or those reachable from ?root=CID) as a CARv1 stream',
    tags: ['dag'],
    auth: false,
    querystring: Type.Object({
      root: Type.Optional(Type.String({ description: 'CID (at most 200 characters)' })),
    }),
    response: Bytes,
    responseContentType: 'application/vnd.ipld.car',
  }),
  importCar: route({
    id: 'importCar',
    method: 'POST',
    url: '/v1/dag/import',
    summary:
      'Import a CARv1 file (at most 256 MiB; two imports at a time, else 503 IMPORT_BUSY): every block is validated; a bad file imports nothing',
    tags: ['dag'],
    auth: true,
    requestContentType: 'application/vnd.ipld.car',
    bodyLimit: MAX_IMPORT_BYTES,
    response: Type.Object({
      blocks: Type.Integer(),
      stored: Type.Integer(),
      duplicates: Type.Integer(),
      equivocations: Type.Integer(),
      roots: Type.Array(Type.String()),
    }),
  }),
  verify: route({
    id: 'verify',
    method: 'POST',
    url: '/v1/dag/verify',
    summary: 'Re-check every stored block (hash, encoding, signature, chunk anchoring)',
    tags: ['dag'],
    auth: true,
    response: Type.Object({
      checked: Type.Integer(),
      bad: Type.Array(Type.Object({ cid: Type.String(), code: Type.String(), message: Type.String() })),
    }),
  }),
  gc: route({
    id: 'gc',
    method: 'POST',
    url: '/v1/dag/gc',
    summary: "Delete blocks that no pin, evidence or the node's own chain reaches",
    tags: ['dag'],
    auth: true,
    response: Type.Object({ removed: Type.Integer() }),
  }),
  listPins: route({
    id: 'listPins',
    method: 'GET',
    url: '/v1/dag/pins',
    summary: 'Pinned blocks (garbage collection keeps them and all they link)',
    tags: ['dag'],
    auth: false,
    response: Type.Object({ pins: Type.Array(Type.String()) }),
  }),
  addPin: route({
    id: 'addPin',
    method: 'PUT',
    url: '/v1/dag/pins/:cid',
    summary: 'Pin a stored block',
    tags: ['dag'],
    auth: true,
    params: CidParam,
    response: Type.Object({ cid: Type.String(), pinned: Type.Boolean() }),
  }),
  removePin: route({
    id: 'removePin',
    method: 'DELETE',
    url: '/v1/dag/pins/:cid',
    summary: 'Unpin a block',
    tags: ['dag'],
    auth: true,
    params: CidParam,
    response: Type.Object({ cid: Type.String(), pinned: Type.Boolean() }),
  }),
  chains: route({
    id: 'chains',
    method: 'GET',
    url: '/v1/dag/chains',
    summary: 'The head (latest block) of every chain the store knows',
    tags: ['dag'],
    auth: false,
    response: Type.Object({ chains: Type.Array(Head) }),
  }),
  evidence: route({
    id: 'evidence',
    method: 'GET',
    url: '/v1/dag/evidence',
    summary: 'Equivocations found: two blocks by one author for one chain position',
    tags: ['dag'],
    auth: false,
    response: Type.Object({
      evidence: Type.Array(
        Type.Object({
          chain: Type.String(),
          seq: Type.Integer(),
          first: Type.String(),
          second: Type.String(),
          detectedAt: Type.String({ format: 'date-time' }),
        }),
      ),
    }),
  }),
  stats: route({
    id: 'stats',
    method: 'GET',
    url: '/v1/dag/stats',
    summary: 'Counts of blocks, bytes, chains, pins and evidence in the store',
    tags: ['dag'],
    auth: false,
    response: Type.Object({
      blocks: Type.Integer(),
      bytes: Type.Integer(),
      chains: Type.Integer(),
      pins: Type.Integer(),
      evidence: Type.Integer(),
    }),
  }),
} as const

export type Routes = typeof routes
export type RouteId = keyof Routes
export type ParamsOf<R extends RouteDef> = Static<NonNullable<R['params']>>
export type QueryOf<R extends RouteDef> = Static<NonNullable<R['querystring']>>
export type BodyOf<R extends RouteDef> = Static<NonNullable<R['body']>>
export type ResponseOf<R extends RouteDef> = Static<R['response']>
