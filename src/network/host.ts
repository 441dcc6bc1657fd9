import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { gossipsub, StrictNoSign } from '@libp2p/gossipsub'
import { createTopicScoreParams } from '@libp2p/gossipsub/score'
import { identify } from '@libp2p/identify'
import type { ConnectionGater, Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { yamux } from '@libp2p/yamux'
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr'
import type { Libp2pOptions } from 'libp2p'
import { createLibp2p } from 'libp2p'
import { NetworkConfigError } from './errors.js'
import { coalescingTcp } from './tcp.js'

/** Largest gossip RPC frame accepted (the message limit is checked per message by the validator). */
const MAX_GOSSIP_FRAME = 16 * 1024 * 1024 + 64 * 1024

export interface HostOptions {
  privateKey: PrivateKey
  listen: string[]
  /** Peer ids (strings) allowed to connect; every other peer is refused by the connection gater. */
  allowed: Set<string>
  /** Pre-shared key file content (libp2p swarm.key format), for a private network. */
  psk?: Uint8Array
  /** The gossip topic, to give it score parameters: invalid messages count against their sender. */
  topic: string
  /** Told of every connection the gater refuses (a peer that is not a node of the federation). */
  onDenied?: (peer: PeerId, direction: 'inbound' | 'outbound') => void
  /** Transports (default TCP); tests give libp2p's in-memory transport. */
  transports?: IcnTransport[]
}

/** A libp2p transport factory, such as `tcp()` or `memory()` (of `@libp2p/memory`). */
export type IcnTransport = NonNullable<Libp2pOptions['transports']>[number]

export type IcnServices = {
  pubsub: ReturnType<ReturnType<typeof gossipsub>>
  identify: ReturnType<ReturnType<typeof identify>>
  ping: ReturnType<ReturnType<typeof ping>>
}

export type IcnLibp2p = Libp2p<IcnServices>

/** Parse multiaddrs given as options; throws NetworkConfigError naming the flag. */
export function parseMultiaddrs(values: string[], flag: string): Multiaddr[] {
  return values.map((v) => {
    try {
      return multiaddr(v)
    } catch (err) {
      throw new NetworkConfigError(
        `${flag} ${JSON.stringify(v)} is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/7421)`,
        {
          cause: err,
        },
      )
    }
  })
}

/** Read a pre-shared key file (swarm.key format, made by `icn federation psk`). */
export async function readPskFile(path: string): Promise<Uint8Array> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new NetworkConfigError(`cannot read pre-shared key file ${path}: ${(err as Error).message}`)
  }
  if (!bytes.toString('utf8').startsWith('/key/swarm/psk/1.0.0/'))
    throw new NetworkConfigError(`${path} is not a libp2p pre-shared key file (/key/swarm/psk/1.0.0/)`)
  return new Uint8Array(bytes)
}

/**
 * A gater that lets only the federation's nodes connect, in either direction. `onDenied` hears of each refusal
 * at its first check (a refused connection goes no further).
 */
export function federationGater(
  allowed: Set<string>,
  onDenied?: (peer: PeerId, direction: 'inbound' | 'outbound') => void,
): ConnectionGater {
  const deny =
    (direction: 'inbound' | 'outbound', report: boolean) =>
    (peer: PeerId): boolean => {
      const denied = !allowed.has(peer.toString())
      if (denied && report) onDenied?.(peer, direction)
      return denied
    }
  return {
    denyDialPeer: deny('outbound', true),
    denyInboundEncryptedConnection: deny('inbound', true),
    denyOutboundEncryptedConnection: deny('outbound', true),
    denyInboundUpgradedConnection: deny('inbound', false),
    denyOutboundUpgradedConnection: deny('outbound', false),
  }
}

/** The gossip message id: the hash of the message bytes (signed blocks need no libp2p message signature). */
function messageId(data: Uint8Array | undefined): Buffer {
  return createHash('sha256')
    .update(data ?? new Uint8Array(0))
    .digest()
}

/**
 * The libp2p host of a federation node: TCP, Noise, Yamux, identify, ping and gossipsub, behind the federation
 * gater and, optionally, a pre-shared key. Not started.
 */
export async function createHost(opts: HostOptions): Promise<IcnLibp2p> {
  parseMultiaddrs(opts.listen, '--p2p-listen')
  return createLibp2p({
    privateKey: opts.privateKey,
    start: false,
    addresses: { listen: opts.listen },
    transports: opts.transports && opts.transports.length > 0 ? opts.transports : [coalescingTcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: federationGater(opts.allowed, opts.onDenied),
    ...(opts.psk ? { connectionProtector: preSharedKey({ psk: opts.psk }) } : {}),
    // The network's own peer health pings every peer (RTT, liveness) and closes a connection only after repeated
    // failures, then re-dials it: a loaded peer is slow, not gone, and libp2p alone would close connections
    // under load and never come back. So libp2p's own monitor (a second ping per peer) is off.
    connectionMonitor: { enabled: false },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        globalSignaturePolicy: StrictNoSign,
        msgIdFn: (msg) => new Uint8Array(messageId(msg.data)),
        // Duplicates (each node gets several copies) are dropped by this id before any decoding.
        fastMsgIdFn: (msg) => messageId(msg.data).toString('base64'),
        allowPublishToZeroTopicPeers: true,
        // Federation nodes keep a connection to every other node, so gossipsub's defaults (D = 6, Dhi = 12, and
        // floodPublish: the publisher sends to every peer) would have each node receive and forward many
        // copies of every message, which is most of the CPU a message costs on a busy host. A mesh of 4 and
        // publishing to the mesh only reach every node of a federation of tens in two or three hops at about
        // two thirds of the CPU per block (measured with 10 nodes on 2 cores; see bench/README.md).
        D: 4,
        Dlo: 3,
        Dhi: 6,
        Dout: 2,
        Dscore: 2,
        Dlazy: 4,
        floodPublish: false,
        // IDONTWANT saves bandwidth for big messages; for blocks of a few KB it costs a control message to
        // every mesh peer, more than it saves on a LAN. Kept for messages over 16 KiB.
        idontwantMinDataSize: 16 * 1024,
        emitSelf: false,
        maxInboundDataLength: MAX_GOSSIP_FRAME,
        scoreParams: {
          // Every peer passed the membership gater, so many nodes on one host are expected, not a Sybil.
          IPColocationFactorWeight: 0,
          topics: {
            [opts.topic]: createTopicScoreParams({
              topicWeight: 1,
              timeInMeshWeight: 0.01,
              firstMessageDeliveriesWeight: 0,
              meshMessageDeliveriesWeight: 0,
              meshFailurePenaltyWeight: 0,
              // Each invalid message costs its sender (count^2 x 10); three put a peer below the graylist.
              invalidMessageDeliveriesWeight: -10,
              invalidMessageDeliveriesDecay: 0.99,
            }),
          },
        },
      }),
    },
  }) as Promise<IcnLibp2p>
}
