/**
 * The federation network: libp2p host behind a membership gater (and optional pre-shared key), block gossip
 * with validating topic validators, the block-exchange protocol, anti-entropy sync and peer health.
 */

export { type Clock, systemClock } from './clock.js'
export * from './errors.js'
export { BlockExchange, EXCHANGE_PROTOCOL } from './exchange.js'
export { BlockGossip, blocksTopic, type GossipComponents } from './gossip.js'
export { createHost, federationGater, type IcnLibp2p, parseMultiaddrs, readPskFile } from './host.js'
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
  type PeerEvents,
  type PeerHealth,
  PeerManager,
  type PeerOptions,
} from './peers.js'
export { type SyncComponents, Synchronizer, type SyncOptions, type SyncRound } from './sync.js'
