/**
 * The block store's HTTP routes: values and blocks, CAR export and import, verify, gc, pins, chains, evidence
 * and stats. Definitions only (typebox): the CLI's client imports them through `api/routes.ts` without loading
 * a store backend; the handlers are in `api.ts`.
 */
import { Type } from 'typebox'
import { route } from '../api/module.js'

// No maxLength in the schemas: the route refuses a CID over 200 characters as INVALID_CID, not as a schema error.
const CidParam = Type.Object({
  cid: Type.String({ description: 'CIDv1 of the block (at most 200 characters)' }),
})
const Bytes = Type.String({ description: 'binary body' })

const Head = Type.Object({
  chain: Type.String(),
  author: Type.String(),
  seq: Type.Integer(),
  cid: Type.String(),
})

/** Largest CAR `POST /v1/dag/import` takes, bytes (256 MiB); larger ones are 413 PAYLOAD_TOO_LARGE. */
export const MAX_IMPORT_BYTES = 256 * 1024 * 1024

export const dagRoutes = {
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
