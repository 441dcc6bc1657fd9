import { EventEmitter } from 'node:events'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { type BlockStore, chainWriter } from '../dag/index.js'
import type { Signer } from '../identity/index.js'
import type { Logger, Metrics } from '../observability/index.js'
import type { Clock } from './clock.js'
import { NetworkConfigError, PeerUnreachableError } from './errors.js'
import { BlockExchange } from './exchange.js'
import { BlockGossip, type RelayWait } from './gossip.js'
import { createHost, type IcnLibp2p, type IcnTransport, parseMultiaddrs } from './host.js'
import { libp2pKeyFor, peerIdFromDid } from './peer-id.js'
import {
  DEFAULT_PEER_OPTIONS,
  type PeerEvent,
  type PeerHealth,
  PeerManager,
  type PeerOptions,
} from './peers.js'
import { Rpc, type RpcHandleOptions, type RpcHandler, RpcHandlers, type RpcRequestOptions } from './rpc.js'
import { Synchronizer, type SyncRound } from './sync.js'

/** The parts of a federation the network needs (the federation module's `Federation` fits). */
export interface NetworkFederation {
  id: string
  nodes: string[]
  parameters: {
    syncIntervalMs: number
    maxMessageBytes: number
    maxBlocksPerResponse: number
    maxResponseBytes: number
  }
}

export interface NetworkOptions {
  listen: string[]
  bootstrap: string[]
  /** Pre-shared key file content (swarm.key format). */
  psk?: Uint8Array
  peers?: Partial<PeerOptions>
}

export interface NetworkComponents {
  signer: Signer
  store: BlockStore
  federation: NetworkFederation
  logger: Logger
  metrics: Metrics
  /** Timers of re-dialing, pings and anti-entropy (default: the system clock). */
  clock?: Clock
  /** Uniform in [0, 1): re-dial jitter, the peer of a periodic anti-entropy round (default Math.random). */
  random?: () => number
  /**
   * The libp2p transports (default TCP). Tests pass libp2p's in-memory transport (`memory()` of
   * `@libp2p/memory`) with `/memory/NAME` listen addresses to run many nodes in one process.
   */
  transports?: IcnTransport[]
  /** Gossip forwards a message once this resolves for its blocks (the node: once its projections folded them). */
  settled?: (cids: string[]) => Promise<RelayWait>
}

export interface NetworkEvents {
  /** A federation node connected and was pinged once (`rttMs` is set if it answered). */
  'peer:connected': [PeerEvent]
  'peer:disconnected': [PeerEvent]
  /** A dial failed or was refused; `dialFailures`, `lastDialError` and `nextDialAt` say how and what next. */
  'peer:dial-failed': [PeerEvent]
}

/**
 * The federation network of one node: a libp2p host that only federation nodes can reach, block gossip,
 * the block-exchange protocol, anti-entropy and peer health with re-dialing.
 */
export class Network extends EventEmitter<NetworkEvents> {
  readonly peerId: PeerId
  private readonly nodes: Set<string>
  private libp2p?: IcnLibp2p
  private gossip?: BlockGossip
  private exchange?: BlockExchange
  private sync?: Synchronizer
  private peerManager?: PeerManager
  private rpc?: Rpc
  private readonly rpcHandlers: RpcHandlers
  private readonly log: Logger
  private state: 'new' | 'starting' | 'started' | 'stopped' = 'new'

  constructor(
    private readonly options: NetworkOptions,
    private readonly c: NetworkComponents,
  ) {
    super()
    this.peerId = peerIdFromDid(c.signer.did)
    this.nodes = new Set(c.federation.nodes)
    this.log = c.logger
    this.rpcHandlers = new RpcHandlers(() => c.federation.parameters.maxMessageBytes)
    parseMultiaddrs(options.listen, '--p2p-listen')
    for (const [i, a] of parseMultiaddrs(options.bootstrap, '--bootstrap').entries()) {
      const id = a.getComponents().find((c) => c.name === 'p2p')?.value
      if (!id)
        throw new NetworkConfigError(
          `--bootstrap ${options.bootstrap[i]} has no /p2p/PEER_ID part (the peer id of a federation node)`,
        )
    }
  }

  get federationId(): string {
    return this.c.federation.id
  }

  /** Listen addresses with this node's peer id, as other nodes dial them. */
  get listenAddrs(): string[] {
    return this.libp2p?.getMultiaddrs().map((a) => a.toString()) ?? []
  }

  isNode(did: string): boolean {
    return this.nodes.has(did)
  }

  isFederationChain(chain: string): boolean {
    return this.nodes.has(chainWriter(chain))
  }

  /** Start the host and every part of the network. A second call does nothing; a stopped network stays stopped. */
  async start(): Promise<void> {
    if (this.state !== 'new') return
    this.state = 'starting'
    const { federation, logger, metrics, store, signer, clock, random } = this.c
    const params = federation.parameters
    const others = federation.nodes.filter((d) => d !== signer.did).map((d) => peerIdFromDid(d))
    const allowed = new Set(others.map((p) => p.toString()))
    const libp2p = await createHost({
      privateKey: libp2pKeyFor(signer),
      listen: this.options.listen,
      allowed,
      psk: this.options.psk,
      topic: `/icn/${federation.id}/blocks/1`,
      transports: this.c.transports,
      onDenied: (peer, direction) => {
        metrics.peerConnectionsDenied.inc({ direction })
        this.log.debug(
          { peer: peer.toString(), direction },
          'connection refused: not a node of this federation',
        )
      },
    })
    this.libp2p = libp2p
    const peerManager = new PeerManager(
      { ...DEFAULT_PEER_OPTIONS, ...this.options.peers },
      {
        libp2p,
        logger: logger.child({ component: 'peers' }),
        metrics,
        members: others,
        clock,
        random,
        events: {
          connected: (p) => {
            this.emit('peer:connected', p)
            const id = peerIdFromString(p.peerId)
            void this.sync?.syncWith(id)
          },
          disconnected: (p) => {
            this.exchange?.forget(p.peerId)
            this.rpc?.forget(p.peerId)
            this.emit('peer:disconnected', p)
          },
          dialFailed: (p) => this.emit('peer:dial-failed', p),
        },
      },
    )
    this.peerManager = peerManager
    this.exchange = new BlockExchange(
      { maxBlocksPerResponse: params.maxBlocksPerResponse, maxResponseBytes: params.maxResponseBytes },
      {
        libp2p,
        store,
        logger: logger.child({ component: 'exchange' }),
        metrics,
        isFederationChain: (chain) => this.isFederationChain(chain),
        knownPeers: () => this.knownAddresses,
        onSent: (peer, n) => peerManager.sent(peer, n),
        onMisbehaviour: (peer, reason) => peerManager.misbehaved(peer, reason),
      },
    )
    this.rpc = new Rpc(this.rpcHandlers, {
      libp2p,
      logger: logger.child({ component: 'rpc' }),
      metrics,
      did: signer.did,
      isNode: (did) => this.isNode(did),
      onMisbehaviour: (peer, reason) => peerManager.misbehaved(peer, reason),
      maxMessageBytes: params.maxMessageBytes,
    })
    this.sync = new Synchronizer(
      { intervalMs: params.syncIntervalMs, pageSize: params.maxBlocksPerResponse },
      {
        store,
        exchange: this.exchange,
        logger: logger.child({ component: 'sync' }),
        metrics,
        isFederationChain: (chain) => this.isFederationChain(chain),
        peers: () => peerManager.connectedPeers(),
        onReceived: (peer, n) => peerManager.received(peer, n),
        onMisbehaviour: (peer, reason) => peerManager.misbehaved(peer, reason),
        onPeerAddresses: (list) => void this.learnAddresses(list),
        needsAddresses: () => peerManager.needsAddresses(),
        clock,
        random,
      },
    )
    this.gossip = new BlockGossip(federation.id, params.maxMessageBytes, {
      libp2p,
      store,
      logger: logger.child({ component: 'gossip' }),
      metrics,
      isNode: (did) => this.isNode(did),
      onGap: (peer, chain, seq) => this.sync?.fill(peer, chain, seq),
      onReceived: (peer, n) => peerManager.received(peer, n),
      onSent: (peer, n) => peerManager.sent(peer, n),
      settled: this.c.settled,
    })

    try {
      await libp2p.start()
    } catch (err) {
      const why =
        (err as NodeJS.ErrnoException).code === 'EADDRINUSE'
          ? 'is in use'
          : `failed: ${(err as Error).message}`
      throw new NetworkConfigError(
        `libp2p cannot listen on ${this.options.listen.join(' ')}: ${why}; choose another with --p2p-listen`,
        { cause: err },
      )
    }
    await this.exchange.start()
    await this.rpc.start()
    this.gossip.start()
    for (const a of parseMultiaddrs(this.options.bootstrap, '--bootstrap')) {
      const id = peerIdFromString(a.getComponents().find((c) => c.name === 'p2p')!.value!)
      if (!allowed.has(id.toString())) {
        this.log.warn({ addr: a.toString() }, 'bootstrap address is not a node of this federation: ignored')
        continue
      }
      await peerManager.addAddresses(id, [a])
    }
    peerManager.start()
    this.sync.start()
    await this.refreshKnownAddresses()
    if (this.state === 'starting') this.state = 'started'
    this.log.info(
      {
        peerId: this.peerId.toString(),
        listen: this.listenAddrs,
        federation: federation.id,
        nodes: others.length,
      },
      'network started',
    )
  }

  /** Stop everything, in reverse order. Before `start`, or a second time, it does nothing. */
  async stop(): Promise<void> {
    if (this.state === 'new' || this.state === 'stopped') {
      this.state = 'stopped'
      return
    }
    this.state = 'stopped'
    this.sync?.stop()
    this.peerManager?.stop()
    this.gossip?.stop()
    await this.rpc?.stop()
    await this.exchange?.stop()
    try {
      await this.libp2p?.stop()
    } catch (err) {
      this.log.warn({ err }, 'libp2p stop failed')
    }
  }

  /**
   * Answer RPC requests of `protocol` (a name such as `ledger/forward/1`) with `handler`; returns the function
   * that removes it. Handlers may be added before `start`. A handler that throws an IcnError sends the caller
   * its code, message and details; any other throw reaches the caller as RPC_REMOTE_ERROR. Throws
   * RpcHandlerError (RPC_HANDLER_INVALID) for a bad name, bad limits or a protocol already handled.
   */
  handle(
    protocol: string,
    handler: (
      message: unknown,
      from: { did: string; peerId: string },
      options: { signal: AbortSignal; requestId: string },
    ) => Promise<unknown>,
    options?: RpcHandleOptions,
  ): () => void {
    return this.rpcHandlers.add(protocol, handler as RpcHandler, options)
  }

  /**
   * Send `message` (any DAG-CBOR value) to the federation node `did` under `protocol` and return the reply of
   * its handler; dials the node if it is not connected. A request to this node's own DID is answered by its
   * own handlers. Throws PEER_UNREACHABLE, RPC_TIMEOUT, MESSAGE_TOO_LARGE, UNKNOWN_PROTOCOL, RPC_MALFORMED,
   * ABORTED, or a RemoteError (`remote: true`) carrying the remote handler's code.
   */
  async request(
    did: string,
    protocol: string,
    message: unknown,
    options?: RpcRequestOptions,
  ): Promise<unknown> {
    if (!this.rpc || this.state === 'stopped')
      throw new PeerUnreachableError(did, 'not_started', 'the network is not running: no RPC')
    return this.rpc.request(did, protocol, message, options)
  }

  async peers(): Promise<PeerHealth[]> {
    return this.peerManager ? this.peerManager.list() : []
  }

  /** Run one anti-entropy round with every connected peer now (tests, operators). */
  async syncNow(): Promise<(SyncRound | undefined)[]> {
    if (!this.sync || !this.peerManager) return []
    return Promise.all(this.peerManager.connectedPeers().map((p) => this.sync!.syncWith(p)))
  }

  private knownAddresses: { peerId: string; addrs: string[] }[] = []

  private async refreshKnownAddresses(): Promise<void> {
    if (this.peerManager) this.knownAddresses = await this.peerManager.knownAddresses()
  }

  private async learnAddresses(list: { peerId: string; addrs: string[] }[]): Promise<void> {
    for (const p of list) {
      if (p.peerId === this.peerId.toString() || !this.peerManager?.isMember(p.peerId)) continue
      const addrs = []
      for (const a of p.addrs) {
        try {
          addrs.push(multiaddr(a))
        } catch {
          // a peer's bad address is skipped, not fatal
        }
      }
      try {
        await this.peerManager.addAddresses(peerIdFromString(p.peerId), addrs)
      } catch {
        // unknown or malformed peer id: skipped
      }
    }
    await this.refreshKnownAddresses()
  }
}
