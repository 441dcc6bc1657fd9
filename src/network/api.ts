/**
 * The handlers of the federation and network routes (`routes.ts`), over the node's view of its federation and
 * network. The node builds them with `networkHandlers` and hands them to the API server.
 */
import type { ModuleHandlers } from '../api/index.js'
// errors.js and types only: this file must not load libp2p before the node does.
import { NoFederationError } from './errors.js'
import type { PeerHealth } from './peers.js'
import { networkRoutes } from './routes.js'

/** The federation side of the node, as the API shows it. */
export interface ApiFederation {
  id: string
  name: string
  founder: string
  members: string[]
  nodes: string[]
  /** Member DID → home node DID, for every member. */
  homes: Record<string, string>
  parameters: Record<string, number>
  peerId: string
  listenAddrs(): string[]
  peers(): Promise<PeerHealth[]>
}

/** What the federation and network handlers use. */
export interface NetworkApiComponents {
  /** The federation and network, when the node joined one (started with a genesis). */
  federation?: ApiFederation
}

/** The handlers of `networkRoutes`. */
export function networkHandlers(c: NetworkApiComponents): ModuleHandlers<typeof networkRoutes> {
  return {
    module: 'network',
    routes: networkRoutes,
    handlers: {
      getFederation: async () => {
        const f = c.federation
        if (!f) throw new NoFederationError()
        const { id, name, founder, members, nodes, homes, parameters } = f
        return { id, name, founder, members, nodes, homes, parameters }
      },
      getPeers: async () => {
        const peers = (await c.federation?.peers()) ?? []
        const iso = (t?: number): { [k: string]: string } | undefined =>
          t === undefined ? undefined : { v: new Date(t).toISOString() }
        return {
          peers: peers.map((p) => {
            const { connectedSince, lastSeen, nextDialAt, ...rest } = p
            return {
              ...rest,
              ...(iso(connectedSince) ? { connectedSince: iso(connectedSince)!.v } : {}),
              ...(iso(lastSeen) ? { lastSeen: iso(lastSeen)!.v } : {}),
              ...(iso(nextDialAt) ? { nextDialAt: iso(nextDialAt)!.v } : {}),
            }
          }),
        }
      },
    },
  }
}
