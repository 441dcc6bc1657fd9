import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger, Metrics } from '../observability/index.js'
import { type Clock, systemClock } from './clock.js'
import { describeError, PeerRefusedError } from './errors.js'
import type { IcnLibp2p } from './host.js'
import { didFromPeerId } from './peer-id.js'

/** What the node knows of one federation peer. */
export interface PeerHealth {
  peerId: string
  did: string
  connected: boolean
  /** ms since the epoch; while connected. */
  connectedSince?: number
  /** Last time anything was heard from it (connection, ping, block), ms since the epoch. */
  lastSeen?: number
  /** Round-trip time of the last successful ping (the first is sent as the connection opens). */
  rttMs?: number
  /** Blocks received from it, by gossip (as it forwarded them) and by block exchange. */
  blocksReceived: number
  /** Blocks sent to it: this node's own blocks announced to it by gossip, and blocks served to it by block exchange. */
  blocksSent: number
  /** Gossipsub's score of the peer (negative after invalid messages). */
  score: number
  /**
   * Protocol violations seen from it on direct streams (block exchange, RPC): malformed or oversized frames,
   * broken envelopes, replies that break the request's rules.
   */
  misbehaviour: number
  addrs: string[]
  /** Failed dials in a row, a connection it closed before answering counted as one (0 once it answers). */
  dialFailures: number
  /** Why the last dial failed: the error's name, code and message. */
  lastDialError?: string
  /**
   * The last failures look like the peer refusing this node (it closed the connection before answering, or the
   * handshake was denied: another federation, another genesis, another pre-shared key): re-dials back off hard.
   */
  refused: boolean
  /** When the next re-dial is due, ms since the epoch (while disconnected). */
  nextDialAt?: number
}

/**
 * What the connected, disconnected and dial-failed events carry: the peer's health without its gossip score
 * and addresses, which cost a score computation and a peer-store read per event and are in `list()`.
 */
export type PeerEvent = Omit<PeerHealth, 'score' | 'addrs'>

export interface PeerOptions {
  /** Ping period. */
  pingIntervalMs: number
  /** Pings failing in a row before the connection is closed and re-dialed. */
  maxPingFailures: number
  /** First re-dial delay; doubles with every failure up to `redialMaxMs`, with jitter. */
  redialBaseMs: number
  redialMaxMs: number
  /** For a peer that refuses this node the delay grows fourfold per refusal, up to this. */
  refusedMaxMs: number
  /**
   * At start, a member whose peer id sorts after this node's is first dialed this much later, unless it has
   * connected meanwhile; the others at once (and only these get the fast retries of `startRetryWindowMs`). When a federation starts, every node dials every other at the
   * same moment, and both dials of a pair succeed: two connections, two handshakes, identify and gossip
   * streams on each (measured: 70 connections for the 45 pairs of a 10-node devnet). The peer that sorts
   * after this one dials it at its own start, so one connection is made.
   */
  startDialDelayMs: number
  /**
   * For this long after start, a dial refused at the TCP level (ECONNREFUSED: nothing listens yet, the peer is
   * still starting) is retried after `redialBaseMs` (with jitter) instead of a growing delay, until the peer
   * has answered once. Refused connects cost no handshake; backing off from a peer that is merely starting
   * left a started federation unmeshed for seconds.
   */
  startRetryWindowMs: number
}

export const DEFAULT_PEER_OPTIONS: PeerOptions = {
  pingIntervalMs: 10_000,
  maxPingFailures: 3,
  redialBaseMs: 500,
  redialMaxMs: 30_000,
  refusedMaxMs: 600_000,
  startDialDelayMs: 2_000,
  startRetryWindowMs: 30_000,
}

/** Failed dials in a row after which a member's known addresses are doubted and peers are asked for others. */
const ADDRESS_HUNT_FAILURES = 3

/** How long one dial or ping may take. */
const DIAL_TIMEOUT_MS = 10_000

/** Dial errors that mean the peer (or our gater) refuses the connection, not that it cannot be reached. */
const REFUSALS = new Set([
  'EncryptionFailedError', // Noise failed: another pre-shared key, or none where one is expected
  'InvalidCryptoExchangeError',
  'UnexpectedPeerError', // another node listens at that address
  'DialDeniedError',
  'ConnectionDeniedError',
])

interface PeerState {
  id: PeerId
  did: string
  connectedSince?: number
  lastSeen?: number
  rttMs?: number
  blocksReceived: number
  blocksSent: number
  misbehaviour: number
  pingFailures: number
  pinging: boolean
  /** The current connection answered a ping or carried blocks: the peer accepts this node. */
  established: boolean
  /** Some connection answered since start (then refused connects back off as usual). */
  everEstablished: boolean
  /** `connected` was emitted for the current connection (after its first ping, answered or not). */
  announced: boolean
  dialFailures: number
  /** Refusals in a row (a subset of dialFailures). */
  refusals: number
  /** Bumped at every failure: a dial outcome compares it to tell whether a failure was already counted. */
  failureSeq: number
  lastError?: string
  nextDialAt: number
  dialing: boolean
}

export interface PeerEvents {
  /** A connection is open and has been pinged once (so `rttMs` is there if the peer answered). */
  connected: (peer: PeerEvent) => void
  disconnected: (peer: PeerEvent) => void
  /** A dial failed, or the peer closed a new connection before answering; `nextDialAt` says when the next is. */
  dialFailed: (peer: PeerEvent) => void
}

export interface PeerComponents {
  libp2p: IcnLibp2p
  logger: Logger
  metrics: Metrics
  /** Peer ids of the federation's other nodes. */
  members: PeerId[]
  events: PeerEvents
  clock?: Clock
  /** Uniform in [0, 1), for the jitter of re-dial delays. */
  random?: () => number
}

/**
 * The federation's other nodes as this node sees them: connection state, RTT (ping), traffic, score; and the
 * re-dialer that keeps reconnecting any of them it has lost, with exponential backoff and jitter, so a mesh
 * that was overloaded, partitioned or restarted heals by itself, while a node that refuses this one (another
 * federation's) is tried ever more rarely. `start` and `stop` are idempotent; it can be started again.
 */
export class PeerManager {
  private readonly peers = new Map<string, PeerState>()
  private readonly clock: Clock
  private readonly random: () => number
  private running = false
  private pingTimer?: unknown
  private dialTimer?: unknown
  private dialDue = Number.POSITIVE_INFINITY
  private startedAt = 0
  private readonly onConnectEvent = (e: CustomEvent<PeerId>): void => this.onConnect(e.detail)
  private readonly onDisconnectEvent = (e: CustomEvent<PeerId>): void => this.onDisconnect(e.detail)

  constructor(
    private readonly opts: PeerOptions,
    private readonly c: PeerComponents,
  ) {
    this.clock = c.clock ?? systemClock
    this.random = c.random ?? Math.random
    for (const id of c.members) this.track(id)
  }

  private track(id: PeerId): PeerState {
    const key = id.toString()
    let s = this.peers.get(key)
    if (!s) {
      s = {
        id,
        did: didFromPeerId(id),
        blocksReceived: 0,
        blocksSent: 0,
        misbehaviour: 0,
        pingFailures: 0,
        pinging: false,
        established: false,
        everEstablished: false,
        announced: false,
        dialFailures: 0,
        refusals: 0,
        failureSeq: 0,
        nextDialAt: 0,
        dialing: false,
      }
      this.peers.set(key, s)
    }
    return s
  }

  /** Listen to libp2p's connection events, ping, and re-dial. A second call does nothing. */
  start(): void {
    if (this.running) return
    this.running = true
    const { libp2p } = this.c
    libp2p.addEventListener('peer:connect', this.onConnectEvent)
    libp2p.addEventListener('peer:disconnect', this.onDisconnectEvent)
    this.startedAt = this.clock.now()
    for (const s of this.peers.values())
      if (s.connectedSince === undefined && s.dialFailures === 0 && !this.dialsFirst(s))
        s.nextDialAt = Math.max(s.nextDialAt, this.startedAt + this.opts.startDialDelayMs)
    for (const id of libp2p.getPeers()) this.onConnect(id)
    this.schedulePing()
    this.redial()
  }

  /** Remove the listeners and timers. Before `start`, or a second time, it does nothing. */
  stop(): void {
    if (!this.running) return
    this.running = false
    this.c.libp2p.removeEventListener('peer:connect', this.onConnectEvent)
    this.c.libp2p.removeEventListener('peer:disconnect', this.onDisconnectEvent)
    this.clock.clearTimeout(this.pingTimer)
    this.clock.clearTimeout(this.dialTimer)
    this.pingTimer = undefined
    this.dialTimer = undefined
    this.dialDue = Number.POSITIVE_INFINITY
  }

  /** Remember addresses of a federation peer (from bootstrap flags or a peer's `peers` reply). */
  async addAddresses(peer: PeerId, addrs: Multiaddr[]): Promise<void> {
    if (!this.peers.has(peer.toString()) || addrs.length === 0) return
    await this.c.libp2p.peerStore.merge(peer, { multiaddrs: addrs })
  }

  isMember(peer: string): boolean {
    return this.peers.has(peer)
  }

  connectedPeers(): PeerId[] {
    return [...this.peers.values()].filter((s) => s.connectedSince !== undefined).map((s) => s.id)
  }

  received(peer: string, blocks: number): void {
    const s = this.peers.get(peer)
    if (!s) return
    s.blocksReceived += blocks
    s.lastSeen = this.clock.now()
    if (s.connectedSince !== undefined) this.establish(s)
  }

  sent(peer: string, blocks: number): void {
    const s = this.peers.get(peer)
    if (s) s.blocksSent += blocks
  }

  /** The peer broke a protocol rule (`reason` is a bounded metrics label): counted against it and logged. */
  misbehaved(peer: string, reason: string): void {
    const s = this.peers.get(peer)
    if (!s) return
    s.misbehaviour++
    this.c.metrics.peerMisbehaviour.inc({ reason })
    this.c.logger.info({ peer, did: s.did, reason, count: s.misbehaviour }, 'peer broke the protocol')
  }

  async list(): Promise<PeerHealth[]> {
    const out: PeerHealth[] = []
    for (const s of this.peers.values()) out.push(await this.health(s))
    return out.sort((a, b) => (a.did < b.did ? -1 : 1))
  }

  /**
   * Whether asking a peer for addresses could help: some other member is not connected and this node has no
   * address for it, or its dials have failed `ADDRESS_HUNT_FAILURES` times in a row (it may have moved). When
   * every member is connected or reachable at a known address, a new connection skips the `peers` request.
   */
  async needsAddresses(): Promise<boolean> {
    for (const s of this.peers.values()) {
      if (s.connectedSince !== undefined) continue
      if (s.dialFailures >= ADDRESS_HUNT_FAILURES) return true
      if ((await this.addrsOf(s.id)).length === 0) return true
    }
    return false
  }

  /** Known addresses of the members (for a peer's `peers` request). */
  async knownAddresses(): Promise<{ peerId: string; addrs: string[] }[]> {
    const out: { peerId: string; addrs: string[] }[] = []
    for (const s of this.peers.values()) {
      const addrs = await this.addrsOf(s.id)
      if (addrs.length > 0) out.push({ peerId: s.id.toString(), addrs })
    }
    return out
  }

  private async addrsOf(id: PeerId): Promise<string[]> {
    try {
      const peer = await this.c.libp2p.peerStore.get(id)
      return peer.addresses.map((a) => a.multiaddr.toString())
    } catch {
      return []
    }
  }

  /** Tell the listener, after the current step has finished (never from inside a state change). */
  private emit(event: keyof PeerEvents, s: PeerState): void {
    const summary = this.summary(s)
    queueMicrotask(() => this.c.events[event](summary))
  }

  private async health(s: PeerState): Promise<PeerHealth> {
    return { ...this.summary(s), score: this.score(s.id), addrs: await this.addrsOf(s.id) }
  }

  private summary(s: PeerState): PeerEvent {
    const connected = s.connectedSince !== undefined
    return {
      peerId: s.id.toString(),
      did: s.did,
      connected,
      ...(connected ? { connectedSince: s.connectedSince } : {}),
      ...(s.lastSeen !== undefined ? { lastSeen: s.lastSeen } : {}),
      ...(s.rttMs !== undefined ? { rttMs: s.rttMs } : {}),
      blocksReceived: s.blocksReceived,
      blocksSent: s.blocksSent,
      misbehaviour: s.misbehaviour,
      dialFailures: s.dialFailures,
      ...(s.lastError !== undefined ? { lastDialError: s.lastError } : {}),
      refused: s.refusals > 0,
      ...(connected ? {} : { nextDialAt: s.nextDialAt }),
    }
  }

  private score(id: PeerId): number {
    try {
      return (this.c.libp2p.services.pubsub as unknown as { getScore(p: string): number }).getScore(
        id.toString(),
      )
    } catch {
      return 0
    }
  }

  private onConnect(id: PeerId): void {
    const s = this.peers.get(id.toString())
    if (!s || s.connectedSince !== undefined || !this.running) return
    s.connectedSince = this.clock.now()
    s.lastSeen = s.connectedSince
    s.pingFailures = 0
    s.established = false
    s.announced = false
    this.updateGauge()
    // Ping at once: RTT is known from the start, and a peer that does not accept this node shows itself here,
    // by closing the connection before it answers.
    void this.ping(s).then(() => {
      if (s.connectedSince === undefined || s.announced || !this.running) return
      s.announced = true
      this.c.logger.info({ peer: id.toString(), did: s.did, rttMs: s.rttMs }, 'peer connected')
      this.emit('connected', s)
    })
  }

  private onDisconnect(id: PeerId): void {
    const s = this.peers.get(id.toString())
    if (!s || s.connectedSince === undefined) return
    s.connectedSince = undefined
    this.updateGauge()
    const { established, announced } = s
    s.established = false
    s.announced = false
    if (established) s.nextDialAt = this.clock.now() + this.backoff(s)
    else
      this.failed(
        s,
        announced
          ? new Error('connection closed before the peer answered a ping')
          : new PeerRefusedError(s.did),
        !announced,
      )
    if (announced) {
      this.c.logger.info({ peer: id.toString(), did: s.did }, 'peer disconnected')
      this.emit('disconnected', s)
    }
    this.scheduleDial()
  }

  /** This node dials `s` at once at start (its peer id sorts before this node's); `s` dials the others. */
  private dialsFirst(s: PeerState): boolean {
    const self = (this.c.libp2p as { peerId?: PeerId }).peerId?.toString()
    return self === undefined || s.id.toString() < self
  }

  /** The peer answered on this connection: it accepts this node; failures are forgotten. */
  private establish(s: PeerState): void {
    if (s.established) return
    s.established = true
    s.everEstablished = true
    s.dialFailures = 0
    s.refusals = 0
    s.lastError = undefined
  }

  private failed(s: PeerState, err: unknown, refused: boolean): void {
    s.dialFailures++
    s.failureSeq++
    s.refusals = refused ? s.refusals + 1 : 0
    s.lastError = describeError(err)
    const starting =
      !refused &&
      this.dialsFirst(s) &&
      !s.everEstablished &&
      this.clock.now() - this.startedAt < this.opts.startRetryWindowMs &&
      s.lastError.includes('ECONNREFUSED')
    s.nextDialAt =
      this.clock.now() +
      (starting ? Math.round(this.opts.redialBaseMs * (0.5 + this.random() * 0.5)) : this.backoff(s))
    this.c.metrics.redials.inc({ outcome: refused ? 'refused' : 'failed' })
    const fields = {
      peer: s.id.toString(),
      did: s.did,
      failures: s.dialFailures,
      retryInMs: s.nextDialAt - this.clock.now(),
      err: s.lastError,
    }
    if (refused && s.refusals === 1)
      this.c.logger.warn(fields, 'peer refuses this node: re-dialing it ever more rarely')
    else if (s.dialFailures === 1 || s.dialFailures % 10 === 0) this.c.logger.info(fields, 'dial failed')
    else this.c.logger.debug(fields, 'dial failed')
    this.emit('dialFailed', s)
  }

  private updateGauge(): void {
    this.c.metrics.peersConnected.set(this.connectedPeers().length)
  }

  /**
   * The delay before the next dial: `redialBaseMs` doubled per failure up to `redialMaxMs`; after refusals,
   * at least `redialBaseMs` x 4^refusals up to `refusedMaxMs`. Times a jitter factor in [0.5, 1).
   */
  private backoff(s: PeerState): number {
    const { redialBaseMs: base, redialMaxMs, refusedMaxMs } = this.opts
    let delay = Math.min(redialMaxMs, base * 2 ** Math.min(s.dialFailures, 30))
    if (s.refusals > 0) delay = Math.max(delay, Math.min(refusedMaxMs, base * 4 ** Math.min(s.refusals, 20)))
    return Math.round(delay * (0.5 + this.random() * 0.5))
  }

  /** One timer, for the earliest re-dial due. */
  private scheduleDial(): void {
    if (!this.running) return
    let due = Number.POSITIVE_INFINITY
    for (const s of this.peers.values())
      if (s.connectedSince === undefined && !s.dialing) due = Math.min(due, s.nextDialAt)
    if (due >= this.dialDue) return
    this.clock.clearTimeout(this.dialTimer)
    this.dialTimer = undefined
    this.dialDue = due
    if (due === Number.POSITIVE_INFINITY) return
    this.dialTimer = this.clock.setTimeout(
      () => {
        this.dialTimer = undefined
        this.dialDue = Number.POSITIVE_INFINITY
        this.redial()
      },
      Math.max(0, due - this.clock.now()),
    )
  }

  private redial(): void {
    if (!this.running) return
    const now = this.clock.now()
    for (const s of this.peers.values())
      if (s.connectedSince === undefined && !s.dialing && now >= s.nextDialAt) this.dial(s)
    this.scheduleDial()
  }

  private dial(s: PeerState): void {
    s.dialing = true
    const seq = s.failureSeq
    this.c.libp2p
      .dial(s.id, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      .then(
        (conn) => {
          if (conn.status === 'open') {
            this.c.metrics.redials.inc({ outcome: 'ok' })
            this.onConnect(s.id)
          } else if (s.connectedSince === undefined && s.failureSeq === seq && this.running)
            // closed during the upgrade, before libp2p even reported it connected
            this.failed(s, new PeerRefusedError(s.did), true)
        },
        (err: unknown) => {
          if (this.running) this.failed(s, err, REFUSALS.has((err as Error)?.name))
        },
      )
      .finally(() => {
        s.dialing = false
        this.scheduleDial()
      })
  }

  private schedulePing(): void {
    this.pingTimer = this.clock.setTimeout(() => {
      if (!this.running) return
      this.schedulePing()
      void this.pingAll()
    }, this.opts.pingIntervalMs)
  }

  private async pingAll(): Promise<void> {
    await Promise.all(
      [...this.peers.values()]
        .filter((s) => s.connectedSince !== undefined && !s.pinging)
        .map(async (s) => {
          if (await this.ping(s)) return
          if (s.pingFailures >= this.opts.maxPingFailures && this.running && s.connectedSince !== undefined) {
            this.c.logger.warn(
              { peer: s.id.toString(), failures: s.pingFailures },
              'peer not answering pings: re-dialing',
            )
            s.pingFailures = 0
            await this.c.libp2p.hangUp(s.id).catch(() => {})
          }
        }),
    )
  }

  /** Ping once; true if it answered (RTT, last seen and the metric updated). */
  private async ping(s: PeerState): Promise<boolean> {
    s.pinging = true
    const key = s.id.toString()
    try {
      const rtt = await this.c.libp2p.services.ping.ping(s.id, {
        signal: AbortSignal.timeout(DIAL_TIMEOUT_MS),
      })
      s.rttMs = rtt
      s.lastSeen = this.clock.now()
      s.pingFailures = 0
      this.c.metrics.peerRtt.set({ peer: key }, rtt / 1000)
      if (s.connectedSince !== undefined) this.establish(s)
      return true
    } catch (err) {
      s.pingFailures++
      if (s.connectedSince !== undefined)
        this.c.logger.debug({ peer: key, failures: s.pingFailures, err: describeError(err) }, 'ping failed')
      return false
    } finally {
      s.pinging = false
    }
  }
}
