/**
 * The federation network: libp2p host behind a membership gater (and optional pre-shared key), block gossip
 * with validating topic validators, the block-exchange protocol, anti-entropy sync, peer health, and the
 * node-to-node RPC (`Network.request` / `Network.handle`).
 */

export { type Clock, systemClock } from './clock.js'
export * from './errors.js'
export { BlockExchange, EXCHANGE_PROTOCOL } from './exchange.js'
export { BlockGossip, blocksTopic, type GossipComponents, type RelayWait } from './gossip.js'
export {
  createHost,
  federationGater,
  type IcnLibp2p,
  type IcnTransport,
  parseMultiaddrs,
  readPskFile,
} from './host.js'
export { decodeAnnouncement, encodeAnnouncement } from './messages.js'
export {
  Network,
  type NetworkComponents,
  type NetworkEvents,
  type NetworkFederation,
  type NetworkOptions,
} from './network.js'
export { didFromPeerId, libp2pKeyFor, peerIdForSigner, peerIdFromDid } from './peer-id.js'
export {
  DEFAULT_PEER_OPTIONS,
  type PeerEvent,
  type PeerEvents,
  type PeerHealth,
  PeerManager,
  type PeerOptions,
} from './peers.js'
export {
  DEFAULT_RPC_TIMEOUT_MS,
  MAX_RPC_DEPTH,
  MAX_RPC_FRAME_BYTES,
  MAX_RPC_TIMEOUT_MS,
  RPC_PROTOCOL,
  type RpcHandleOptions,
  type RpcHandler,
  type RpcHandlerOptions,
  type RpcPeer,
  type RpcRequestOptions,
} from './rpc.js'
export { type SyncComponents, Synchronizer, type SyncOptions, type SyncRound } from './sync.js'
