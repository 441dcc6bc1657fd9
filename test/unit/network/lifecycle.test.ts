import type { PeerId } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { type BlockStore, type CommitEvent, chainId, createSignedBlock } from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'
import {
  type BlockExchange,
  BlockGossip,
  describeError,
  type IcnLibp2p,
  peerIdFromDid,
  Synchronizer,
} from '../../../src/network/index.js'
import { createLogger, createMetrics } from '../../../src/observability/index.js'
import { ManualClock } from '../../helpers/manual-clock.js'

const logger = createLogger({ level: 'silent' })

/** A store that only counts its commit listeners and lets the test emit commits. */
class FakeStore {
  readonly listeners = new Set<(e: CommitEvent) => void>()
  onCommit(l: (e: CommitEvent) => void): () => void {
    this.listeners.add(l)
    return () => this.listeners.delete(l)
  }
  emit(e: CommitEvent): void {
    for (const l of this.listeners) l(e)
  }
}

/** The gossipsub calls BlockGossip makes, counted. */
class FakePubsub {
  readonly topicValidators = new Map<string, unknown>()
  subscriptions = 0
  recipients: PeerId[] = []
  published: Uint8Array[] = []
  subscribe(): void {
    this.subscriptions++
  }
  unsubscribe(): void {
    this.subscriptions--
  }
  async publish(_topic: string, data: Uint8Array): Promise<{ recipients: PeerId[] }> {
    this.published.push(data)
    return { recipients: this.recipients }
  }
}

function synchronizer(): {
  sync: Synchronizer
  store: FakeStore
  clock: ManualClock
  rounds: () => number
  heads: AbortSignal[]
} {
  const store = new FakeStore()
  const clock = new ManualClock()
  const peer = peerIdFromDid(Signer.generate().did)
  const heads: AbortSignal[] = []
  let rounds = 0
  const sync = new Synchronizer(
    { intervalMs: 1_000, pageSize: 16 },
    {
      store: store as unknown as BlockStore,
      // A heads request that never answers: one round at a time with the peer, its signal recorded.
      exchange: {
        heads: (_peer: PeerId, signal: AbortSignal) => {
          heads.push(signal)
          return new Promise(() => {})
        },
      } as unknown as BlockExchange,
      logger,
      metrics: createMetrics({ collectProcess: false }),
      isFederationChain: () => true,
      peers: () => {
        rounds++
        return [peer]
      },
      onReceived: () => {},
      onPeerAddresses: () => {},
      clock,
      random: () => 0,
    },
  )
  return { sync, store, clock, rounds: () => rounds, heads }
}

describe('Synchronizer lifecycle', () => {
  it('start twice: one timer, one store listener, one round per period', () => {
    const t = synchronizer()
    t.sync.start()
    t.sync.start()
    expect(t.clock.pending).toBe(1)
    expect(t.store.listeners.size).toBe(1)
    t.clock.advance(3_000)
    expect(t.rounds()).toBe(3)
    expect(t.clock.pending).toBe(1)
    t.sync.stop()
  })

  it('stop before start does nothing, and start still works after it', () => {
    const t = synchronizer()
    t.sync.stop()
    expect(t.clock.pending).toBe(0)
    t.sync.start()
    expect(t.clock.pending).toBe(1)
    expect(t.store.listeners.size).toBe(1)
    // Its rounds run, and are not born aborted.
    t.clock.advance(1_000)
    expect(t.heads.map((s) => s.aborted)).toEqual([false])
    t.sync.stop()
  })

  it('stop removes its timer and store listener (twice is fine), and it can start again', () => {
    const t = synchronizer()
    t.sync.start()
    t.sync.stop()
    t.sync.stop()
    expect(t.clock.pending).toBe(0)
    expect(t.store.listeners.size).toBe(0)
    t.clock.advance(5_000)
    expect(t.rounds()).toBe(0)
    t.sync.start()
    t.clock.advance(1_000)
    expect(t.rounds()).toBe(1)
    t.sync.stop()
  })
})

function gossip(): {
  g: BlockGossip
  store: FakeStore
  pubsub: FakePubsub
  sent: [string, number][]
} {
  const store = new FakeStore()
  const pubsub = new FakePubsub()
  const sent: [string, number][] = []
  const g = new BlockGossip('fed', 65_536, {
    libp2p: { services: { pubsub } } as unknown as IcnLibp2p,
    store: store as unknown as BlockStore,
    logger,
    metrics: createMetrics({ collectProcess: false }),
    isNode: () => true,
    onGap: () => {},
    onReceived: () => {},
    onSent: (peer, n) => sent.push([peer, n]),
  })
  return { g, store, pubsub, sent }
}

describe('BlockGossip lifecycle', () => {
  it('start twice: one subscription, one validator, one store listener', () => {
    const t = gossip()
    t.g.start()
    t.g.start()
    expect(t.pubsub.subscriptions).toBe(1)
    expect(t.pubsub.topicValidators.size).toBe(1)
    expect(t.store.listeners.size).toBe(1)
    t.g.stop()
  })

  it('stop before start does nothing, and start still works after it', () => {
    const t = gossip()
    t.g.stop()
    expect(t.pubsub.subscriptions).toBe(0)
    t.g.start()
    expect(t.pubsub.subscriptions).toBe(1)
    t.g.stop()
  })

  it('stop unsubscribes and removes the validator and the store listener (twice is fine)', () => {
    const t = gossip()
    t.g.start()
    t.g.stop()
    t.g.stop()
    expect(t.pubsub.subscriptions).toBe(0)
    expect(t.pubsub.topicValidators.size).toBe(0)
    expect(t.store.listeners.size).toBe(0)
  })

  it('counts the blocks it announces as sent to each peer gossipsub sent them to', async () => {
    const t = gossip()
    const [p1, p2] = [Signer.generate(), Signer.generate()].map((s) => peerIdFromDid(s.did)) as [
      PeerId,
      PeerId,
    ]
    t.pubsub.recipients = [p1, p2]
    t.g.start()
    const author = Signer.generate()
    const chain = chainId(author.did, 'node')
    const b0 = createSignedBlock(author, { type: 'icn.value/v1', chain, seq: 0, prev: null, ts: 1, body: 0 })
    const b1 = createSignedBlock(author, {
      type: 'icn.value/v1',
      chain,
      seq: 1,
      prev: b0.cid,
      ts: 1,
      body: 1,
    })
    const blocks = [b0, b1]
    // Published on the next turn of the event loop; counted once the publish has answered.
    const done = new Promise<void>((resolve) => {
      const check = (): void => void setImmediate(t.pubsub.published.length > 0 ? resolve : check)
      check()
    })
    t.store.emit({
      source: 'local',
      blocks: blocks.map((b) => ({
        kind: 'signed',
        status: 'stored',
        author: author.did,
        cid: b.cid,
        bytes: b.bytes,
      })) as unknown as CommitEvent['blocks'],
    })
    await done
    expect(t.pubsub.published).toHaveLength(1)
    expect(t.sent).toEqual([
      [p1.toString(), 2],
      [p2.toString(), 2],
    ])
    t.g.stop()
  })
})

describe('describeError', () => {
  it('gives the name, code and message of whatever was thrown, never "undefined"', () => {
    expect(describeError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBe(
      'Error [ECONNRESET]: read ECONNRESET',
    )
    expect(describeError(undefined)).toBe('undefined thrown')
    expect(describeError('boom')).toBe('boom')
    expect(describeError({ reason: 'gone' })).toBe('Object: {"reason":"gone"}')
    expect(describeError(new AggregateError([new Error('a'), new TypeError('b')], ''))).toBe(
      'AggregateError: (Error: a; TypeError: b)',
    )
    const wrapped = new Error('', { cause: Object.assign(new Error('reset'), { name: 'StreamResetError' }) })
    expect(describeError(wrapped)).toBe('Error: caused by StreamResetError: reset')
    for (const v of [undefined, null, {}, new Error(), Object.create(null)])
      expect(describeError(v)).not.toMatch(/undefined$/)
  })
})
