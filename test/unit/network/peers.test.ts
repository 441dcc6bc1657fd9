import type { PeerId } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { Signer } from '../../../src/identity/index.js'
import {
  DEFAULT_PEER_OPTIONS,
  type IcnLibp2p,
  type PeerEvent,
  PeerManager,
  peerIdFromDid,
} from '../../../src/network/index.js'
import { createLogger, createMetrics, type Metrics } from '../../../src/observability/index.js'
import { ManualClock } from '../../helpers/manual-clock.js'

const logger = createLogger({ level: 'silent' })

/** Just what PeerManager uses of libp2p: connection events, dial, ping, hang-up, the peer store. */
class FakeLibp2p extends EventTarget {
  /** This node's peer id; unset, the manager dials every member first. */
  peerId?: PeerId
  readonly listening = new Map<string, number>()
  dials = 0
  /** What a dial does; by default it never settles. */
  onDial: (peer: PeerId) => Promise<{ status: string }> = () => new Promise(() => {})
  onPing: (peer: PeerId) => Promise<number> = () => Promise.reject(new Error('no ping'))
  readonly services = {
    ping: { ping: (peer: PeerId) => this.onPing(peer) },
    pubsub: { getScore: () => 0 },
  }
  readonly peerStore = {
    get: async () => ({ addresses: [] }),
    merge: async () => {},
  }

  override addEventListener(type: string, l: Parameters<EventTarget['addEventListener']>[1]): void {
    this.listening.set(type, (this.listening.get(type) ?? 0) + 1)
    super.addEventListener(type, l)
  }

  override removeEventListener(type: string, l: Parameters<EventTarget['addEventListener']>[1]): void {
    this.listening.set(type, (this.listening.get(type) ?? 0) - 1)
    super.removeEventListener(type, l)
  }

  dial(peer: PeerId): Promise<{ status: string }> {
    this.dials++
    return this.onDial(peer)
  }

  getPeers(): PeerId[] {
    return []
  }

  async hangUp(): Promise<void> {}

  connect(peer: PeerId): void {
    this.dispatchEvent(new CustomEvent('peer:connect', { detail: peer }))
  }

  disconnect(peer: PeerId): void {
    this.dispatchEvent(new CustomEvent('peer:disconnect', { detail: peer }))
  }
}

function setup(
  opts: Partial<typeof DEFAULT_PEER_OPTIONS> = {},
  peer: PeerId = peerIdFromDid(Signer.generate().did),
  self?: PeerId,
): {
  lib: FakeLibp2p
  clock: ManualClock
  metrics: Metrics
  peer: PeerId
  pm: PeerManager
  failures: PeerEvent[]
  connected: PeerEvent[]
  nextFailure: () => Promise<PeerEvent>
} {
  const lib = new FakeLibp2p()
  lib.peerId = self
  const clock = new ManualClock()
  const metrics = createMetrics({ collectProcess: false })
  const failures: PeerEvent[] = []
  const connected: PeerEvent[] = []
  let waiting: ((h: PeerEvent) => void) | undefined
  const pm = new PeerManager(
    { ...DEFAULT_PEER_OPTIONS, ...opts },
    {
      libp2p: lib as unknown as IcnLibp2p,
      logger,
      metrics,
      members: [peer],
      clock,
      random: () => 0.5,
      events: {
        connected: (h) => connected.push(h),
        disconnected: () => {},
        dialFailed: (h) => {
          failures.push(h)
          waiting?.(h)
          waiting = undefined
        },
      },
    },
  )
  const nextFailure = (): Promise<PeerEvent> =>
    new Promise((resolve) => {
      waiting = resolve
    })
  return { lib, clock, metrics, peer, pm, failures, connected, nextFailure }
}

/** Step the clock by `stepMs`, `steps` times; wait for the outcome of every dial a step started. */
async function run(
  t: ReturnType<typeof setup>,
  steps: number,
  stepMs: number,
): Promise<{ at: number; failures: number }[]> {
  const attempts: { at: number; failures: number }[] = []
  for (let i = 0; i < steps; i++) {
    const before = t.lib.dials
    const failure = t.nextFailure()
    t.clock.advance(stepMs)
    if (t.lib.dials === before) continue
    expect(t.lib.dials).toBe(before + 1)
    attempts.push({ at: t.clock.now(), failures: (await failure).dialFailures })
  }
  return attempts
}

describe('re-dialing', () => {
  it('backs off hard from a peer that closes every connection before answering, and says why', async () => {
    const t = setup()
    // A node of another federation: the connection opens, and it drops it before any ping is answered.
    t.lib.onDial = async (peer) => {
      t.lib.connect(peer)
      t.lib.disconnect(peer)
      return { status: 'closed' }
    }
    const first = t.nextFailure()
    t.pm.start()
    expect((await first).dialFailures).toBe(1)
    const attempts = await run(t, 300, 1_000) // five minutes, in one-second steps
    // Dialed once a second, it would be ~300 attempts; backing off 4x per refusal it is a handful.
    expect(attempts.length + 1).toBeLessThanOrEqual(6)
    expect(attempts.map((a) => a.failures)).toEqual(attempts.map((_, i) => i + 2))
    const gaps = attempts.map((a, i) => a.at - (i === 0 ? 1_000_000 : attempts[i - 1]!.at))
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeGreaterThan(gaps[i - 1]!)
    const [h] = await t.pm.list()
    expect(h).toMatchObject({ connected: false, refused: true, dialFailures: attempts.length + 1 })
    expect(h!.lastDialError).toMatch(/^PeerRefusedError \[PEER_REFUSED\]: .+ closed the connection/)
    expect(t.connected).toEqual([])
    const { values } = await t.metrics.redials.get()
    expect(values.find((v) => v.labels.outcome === 'refused')?.value).toBe(attempts.length + 1)
    t.pm.stop()
  })

  it('counts a denied handshake (another pre-shared key) as a refusal too', async () => {
    const t = setup()
    t.lib.onDial = async () => {
      throw Object.assign(new Error('read ECONNRESET'), { name: 'EncryptionFailedError' })
    }
    const first = t.nextFailure()
    t.pm.start()
    const h = await first
    expect(h).toMatchObject({ refused: true, dialFailures: 1 })
    expect(h.lastDialError).toBe('EncryptionFailedError: read ECONNRESET')
    // The next dial waits 2 s x jitter (not the 1 s of a plain failure).
    expect(h.nextDialAt! - t.clock.now()).toBe(1_500)
    t.pm.stop()
  })

  it('doubles the delay for an unreachable peer up to the cap, the counter growing, the reason logged', async () => {
    const t = setup({ startRetryWindowMs: 0 })
    t.lib.onDial = async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })
    }
    const delays: number[] = []
    const first = t.nextFailure()
    t.pm.start()
    let h = await first
    for (let i = 0; i < 9; i++) {
      delays.push(h.nextDialAt! - t.clock.now())
      const next = t.nextFailure()
      t.clock.advance(h.nextDialAt! - t.clock.now())
      h = await next
      expect(h.dialFailures).toBe(i + 2)
    }
    // base 500 ms x 2^failures x 0.75 (the injected jitter), capped at 30 s x 0.75
    expect(delays).toEqual([750, 1_500, 3_000, 6_000, 12_000, 22_500, 22_500, 22_500, 22_500])
    expect(h).toMatchObject({
      refused: false,
      lastDialError: 'Error [ECONNREFUSED]: connect ECONNREFUSED 127.0.0.1:1',
    })
    t.pm.stop()
  })

  it('forgets the failures once the peer answers, and pings it as it connects (RTT at once)', async () => {
    const t = setup()
    let refuse = true
    t.lib.onDial = async (peer) => {
      if (refuse) throw new Error('not yet')
      t.lib.connect(peer)
      return { status: 'open' }
    }
    t.lib.onPing = async () => 7
    const first = t.nextFailure()
    t.pm.start()
    const h = await first
    refuse = false
    const connected = new Promise<void>((resolve) => {
      const check = (): void => (t.connected.length > 0 ? resolve() : void setImmediate(check))
      check()
    })
    t.clock.advance(h.nextDialAt! - t.clock.now())
    await connected
    expect(t.connected[0]).toMatchObject({ connected: true, rttMs: 7, dialFailures: 0, refused: false })
    expect(t.connected[0]).not.toHaveProperty('lastDialError')
    t.pm.stop()
  })
})

/** Two peer ids, in the order the manager compares them. */
function orderedPeers(): [PeerId, PeerId] {
  const [a, b] = [Signer.generate(), Signer.generate()].map((s) => peerIdFromDid(s.did))
  return a!.toString() < b!.toString() ? [a!, b!] : [b!, a!]
}

describe('dialing at start', () => {
  it('dials a member whose id sorts before its own at once', () => {
    const [low, high] = orderedPeers()
    const t = setup({}, low, high)
    t.pm.start()
    expect(t.lib.dials).toBe(1)
    t.pm.stop()
  })

  it('leaves a member whose id sorts after its own to dial first, and dials it itself only later', () => {
    const [low, high] = orderedPeers()
    const t = setup({ startDialDelayMs: 2_000 }, high, low)
    t.pm.start()
    expect(t.lib.dials).toBe(0)
    t.clock.advance(1_999)
    expect(t.lib.dials).toBe(0)
    t.clock.advance(1)
    expect(t.lib.dials).toBe(1)
    t.pm.stop()
  })

  it('does not dial that member at all when it connected first', () => {
    const [low, high] = orderedPeers()
    const t = setup({ startDialDelayMs: 2_000 }, high, low)
    t.pm.start()
    t.lib.connect(high)
    t.clock.advance(10_000)
    expect(t.lib.dials).toBe(0)
    t.pm.stop()
  })

  it('retries a refused connect every redialBaseMs while the peer starts, then backs off as usual', async () => {
    const [low, high] = orderedPeers()
    const t = setup({ startRetryWindowMs: 5_000 }, low, high)
    t.lib.onDial = async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })
    }
    const delays: number[] = []
    const first = t.nextFailure()
    t.pm.start()
    let h = await first
    while (delays.length < 16) {
      delays.push(h.nextDialAt! - t.clock.now())
      const next = t.nextFailure()
      t.clock.advance(h.nextDialAt! - t.clock.now())
      h = await next
    }
    // 500 ms x 0.75 (the injected jitter) within the first 5 s, then the usual doubling from the failures so far
    expect(delays.slice(0, 14)).toEqual(Array(14).fill(375))
    expect(delays[14]).toBe(22_500)
    t.pm.stop()
  })

  it('backs off from a member it leaves to dial first, even when refused at start', async () => {
    const [low, high] = orderedPeers()
    const t = setup({ startDialDelayMs: 0 }, high, low)
    t.lib.onDial = async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })
    }
    const first = t.nextFailure()
    t.pm.start()
    t.clock.advance(0)
    const h = await first
    const next = t.nextFailure()
    t.clock.advance(h.nextDialAt! - t.clock.now())
    expect((await next).nextDialAt! - t.clock.now()).toBe(1_500)
    t.pm.stop()
  })
})

describe('PeerManager lifecycle', () => {
  it('start twice: one pair of listeners, one ping timer, one dial', () => {
    const t = setup()
    t.pm.start()
    t.pm.start()
    expect(t.lib.listening.get('peer:connect')).toBe(1)
    expect(t.lib.listening.get('peer:disconnect')).toBe(1)
    expect(t.lib.dials).toBe(1) // still dialing (it never settles): no dial timer
    expect(t.clock.pending).toBe(1)
    t.clock.advance(DEFAULT_PEER_OPTIONS.pingIntervalMs)
    expect(t.clock.pending).toBe(1)
    t.pm.stop()
  })

  it('stop before start does nothing, and start still works after it', () => {
    const t = setup()
    t.pm.stop()
    expect(t.lib.listening.get('peer:connect') ?? 0).toBe(0)
    expect(t.clock.pending).toBe(0)
    t.pm.start()
    expect(t.lib.listening.get('peer:connect')).toBe(1)
    expect(t.lib.dials).toBe(1)
    t.pm.stop()
  })

  it('stop removes its libp2p listeners and timers (twice is fine)', () => {
    const t = setup()
    t.pm.start()
    t.pm.stop()
    t.pm.stop()
    expect(t.lib.listening.get('peer:connect')).toBe(0)
    expect(t.lib.listening.get('peer:disconnect')).toBe(0)
    expect(t.clock.pending).toBe(0)
    // A connection event after stop changes nothing.
    t.lib.connect(t.peer)
    expect(t.pm.connectedPeers()).toEqual([])
  })
})
