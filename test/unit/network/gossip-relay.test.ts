import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import {
  type Block,
  type BlockStore,
  chainId,
  createSignedBlock,
  type PutResult,
} from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'
import {
  BlockGossip,
  blocksTopic,
  encodeAnnouncement,
  type IcnLibp2p,
  peerIdFromDid,
} from '../../../src/network/index.js'
import { createLogger, createMetrics, type Metrics } from '../../../src/observability/index.js'

type Validator = (peer: PeerId, msg: { data: Uint8Array }) => Promise<TopicValidatorResult>

/** BlockGossip over a store that takes every block and a `settled` the test resolves. */
function relay(settled?: (cids: string[]) => Promise<'none' | 'folded' | 'timeout'>): {
  validate: Validator
  stored: Block[][]
  metrics: Metrics
} {
  const topicValidators = new Map<string, Validator>()
  const pubsub = { topicValidators, subscribe() {}, unsubscribe() {} }
  const stored: Block[][] = []
  const store = {
    onCommit: () => () => {},
    async putMany(blocks: Block[]): Promise<PutResult[]> {
      stored.push(blocks)
      return blocks.map((b) => ({ cid: b.cid, status: 'stored' }))
    },
  }
  const metrics = createMetrics({ collectProcess: false })
  const g = new BlockGossip('fed', 65_536, {
    libp2p: { services: { pubsub } } as unknown as IcnLibp2p,
    store: store as unknown as BlockStore,
    logger: createLogger({ level: 'silent' }),
    metrics,
    isNode: () => true,
    onGap: () => {},
    onReceived: () => {},
    onSent: () => {},
    settled,
  })
  g.start()
  return { validate: topicValidators.get(blocksTopic('fed'))!, stored, metrics }
}

function message(): { data: Uint8Array; block: Block } {
  const author = Signer.generate()
  const block = createSignedBlock(author, {
    type: 'icn.value/v1',
    chain: chainId(author.did, 'ledger'),
    seq: 0,
    prev: null,
    ts: 1,
    body: 0,
  })
  return { data: encodeAnnouncement([block]), block }
}

const peer = peerIdFromDid(Signer.generate().did)

describe('BlockGossip: relaying after the fold', () => {
  it('accepts (forwards) a message only once settled resolved for its stored blocks, and counts how', async () => {
    const asked: string[][] = []
    let finish!: (o: 'folded') => void
    const t = relay((cids) => {
      asked.push(cids)
      return new Promise((resolve) => {
        finish = resolve
      })
    })
    const m = message()
    let result: TopicValidatorResult | undefined
    const validating = t.validate(peer, { data: m.data }).then((r) => {
      result = r
    })
    await new Promise((resolve) => setImmediate(resolve))
    expect(t.stored).toHaveLength(1)
    expect(asked).toEqual([[m.block.cid.toString()]])
    expect(result).toBeUndefined()
    finish('folded')
    await validating
    expect(result).toBe(TopicValidatorResult.Accept)
    const counted = (await t.metrics.gossipFoldWaits.get()).values
    expect(counted).toEqual([expect.objectContaining({ labels: { outcome: 'folded' }, value: 1 })])
  })

  it('does not ask for a message it rejects, and without settled it forwards once stored', async () => {
    const asked: string[][] = []
    const t = relay(async (cids) => {
      asked.push(cids)
      return 'none'
    })
    expect(await t.validate(peer, { data: new Uint8Array([1, 2, 3]) })).toBe(TopicValidatorResult.Reject)
    expect(asked).toEqual([])
    const plain = relay()
    expect(await plain.validate(peer, { data: message().data })).toBe(TopicValidatorResult.Accept)
    expect(plain.stored).toHaveLength(1)
  })
})
