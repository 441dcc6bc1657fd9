/**
 * The federation and network routes: the federation this node belongs to and its peers as this node sees them.
 * Definitions only (typebox): the CLI's client imports them through `api/routes.ts`, without libp2p; the
 * handlers are in `api.ts`.
 */
import { Type } from 'typebox'
import { route } from '../api/module.js'

export const networkRoutes = {
  getFederation: route({
    id: 'getFederation',
    method: 'GET',
    url: '/v1/federation',
    summary:
      'The federation this node belongs to: id (genesis CID), name, members and their home nodes, nodes and parameters',
    tags: ['federation'],
    auth: false,
    response: Type.Object({
      id: Type.String(),
      name: Type.String(),
      founder: Type.String(),
      members: Type.Array(Type.String()),
      nodes: Type.Array(Type.String()),
      homes: Type.Record(Type.String(), Type.String(), { description: 'member DID → its home node DID' }),
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
} as const
