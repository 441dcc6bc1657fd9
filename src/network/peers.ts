import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger, Metrics } from '../observability/index.js'
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
  /** Round-trip time of the last successful ping. */
  rttMs?: number
  blocksReceived: number
  blocksSent: number
  /** Gossipsub's score of the peer (negative after invalid messages). */
  score: number
  addrs: string[]
  /** Consecutive failed dials (0 while connected). */
  dialFailures: number
  /** When the next re-dial is due, ms since the epoch (while disconnected). */
  nextDialAt?: number
}

export interface PeerOptions {
  /** Ping period. */
  pingIntervalMs: number
  /** Pings failing in a row before the connection is closed and re-dialed. */
  maxPingFailures: number
  /** First re-dial delay; doubles with every failure up to `redialMaxMs`, with jitter. */
  redialBaseMs: number
  redialMaxMs: number
}

export const DEFAULT_PEER_OPTIONS: PeerOptions = {
  pingIntervalMs: 10_000,
  maxPingFailures: 3,
  redialBaseMs: 500,
  redialMaxMs: 30_000,
}

interface PeerState {
  id: PeerId
  did: string
  connectedSince?: number
  lastSeen?: number
  rttMs?: number
  blocksReceived: number
  blocksSent: number
  pingFailures: number
  dialFailures: number
  nextDialAt: number
  dialing: boolean
}

export interface PeerEvents {
  connected: (peer: PeerHealth) => void
  disconnected: (peer: PeerHealth) => void
}

/**
 * The federation's other nodes as this node sees them: connection state, RTT (ping), traffic, score; and the
 * re-dialer that keeps reconnecting any of them it has lost, with exponential backoff and jitter, so a mesh
 * that was overloaded, partitioned or restarted heals by itself.
 */
export class PeerManager {
  private readonly peers = new Map<string, PeerState>()
  private pingTimer?: NodeJS.Timeout
  private dialTimer?: NodeJS.Timeout
  private stopped = false

  constructor(
    private readonly opts: PeerOptions,
    private readonly c: {
      libp2p: IcnLibp2p
      logger: Logger
      metrics: Metrics
      /** Peer ids of the federation's other nodes. */
      members: PeerId[]
      events: PeerEvents
    },
  ) {
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
        pingFailures: 0,
        dialFailures: 0,
        nextDialAt: 0,
        dialing: false,
      }
      this.peers.set(key, s)
    }
    return s
  }

  start(): void {
    const { libp2p } = this.c
    libp2p.addEventListener('peer:connect', (e) => this.onConnect(e.detail))
    libp2p.addEventListener('peer:disconnect', (e) => this.onDisconnect(e.detail))
    for (const id of libp2p.getPeers()) this.onConnect(id)
    this.pingTimer = setInterval(() => void this.pingAll(), this.opts.pingIntervalMs)
    this.pingTimer.unref()
    this.dialTimer = setInterval(() => this.redial(), 250)
    this.dialTimer.unref()
    this.redial()
  }

  stop(): void {
    this.stopped = true
    clearInterval(this.pingTimer)
    clearInterval(this.dialTimer)
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
    s.lastSeen = Date.now()
  }

  sent(peer: string, blocks: number): void {
    const s = this.peers.get(peer)
    if (s) s.blocksSent += blocks
  }

  async list(): Promise<PeerHealth[]> {
    const out: PeerHealth[] = []
    for (const s of this.peers.values()) out.push(await this.health(s))
    return out.sort((a, b) => (a.did < b.did ? -1 : 1))
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

  private async health(s: PeerState): Promise<PeerHealth> {
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
      score: this.score(s.id),
      addrs: await this.addrsOf(s.id),
      dialFailures: s.dialFailures,
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
    if (!s || s.connectedSince !== undefined) return
    s.connectedSince = Date.now()
    s.lastSeen = s.connectedSince
    s.dialFailures = 0
    s.pingFailures = 0
    this.updateGauge()
    this.c.logger.info({ peer: id.toString(), did: s.did }, 'peer connected')
    void this.health(s).then((h) => this.c.events.connected(h))
  }

  private onDisconnect(id: PeerId): void {
    const s = this.peers.get(id.toString())
    if (!s || s.connectedSince === undefined) return
    s.connectedSince = undefined
    s.nextDialAt = Date.now() + this.backoff(0)
    this.updateGauge()
    this.c.logger.info({ peer: id.toString(), did: s.did }, 'peer disconnected')
    void this.health(s).then((h) => this.c.events.disconnected(h))
  }

  private updateGauge(): void {
    this.c.metrics.peersConnected.set(this.connectedPeers().length)
  }

  private backoff(failures: number): number {
    const base = Math.min(this.opts.redialMaxMs, this.opts.redialBaseMs * 2 ** Math.min(failures, 16))
    return Math.round(base * (0.5 + Math.random() * 0.5))
  }

  private redial(): void {
    if (this.stopped) return
    const now = Date.now()
    for (const s of this.peers.values()) {
      if (s.connectedSince !== undefined || s.dialing || now < s.nextDialAt) continue
      s.dialing = true
      this.c.libp2p
        .dial(s.id, { signal: AbortSignal.timeout(10_000) })
        .then(() => {
          this.c.metrics.redials.inc({ outcome: 'ok' })
          this.onConnect(s.id)
        })
        .catch((err: unknown) => {
          s.dialFailures++
          s.nextDialAt = Date.now() + this.backoff(s.dialFailures)
          this.c.metrics.redials.inc({ outcome: 'failed' })
          const log = s.dialFailures === 1 || s.dialFailures % 10 === 0 ? 'info' : 'debug'
          this.c.logger[log](
            {
              peer: s.id.toString(),
              failures: s.dialFailures,
              retryInMs: s.nextDialAt - Date.now(),
              err: (err as Error).message,
            },
            'dial failed',
          )
        })
        .finally(() => {
          s.dialing = false
        })
    }
  }

  private async pingAll(): Promise<void> {
    await Promise.all(
      [...this.peers.values()]
        .filter((s) => s.connectedSince !== undefined)
        .map(async (s) => {
          const key = s.id.toString()
          try {
            const rtt = await this.c.libp2p.services.ping.ping(s.id, { signal: AbortSignal.timeout(10_000) })
            s.rttMs = rtt
            s.lastSeen = Date.now()
            s.pingFailures = 0
            this.c.metrics.peerRtt.set({ peer: key }, rtt / 1000)
          } catch (err) {
            s.pingFailures++
            if (s.pingFailures >= this.opts.maxPingFailures && !this.stopped) {
              this.c.logger.warn(
                { peer: key, failures: s.pingFailures, err },
                'peer not answering pings: re-dialing',
              )
              s.pingFailures = 0
              await this.c.libp2p.hangUp(s.id).catch(() => {})
            }
          }
        }),
    )
  }
}
