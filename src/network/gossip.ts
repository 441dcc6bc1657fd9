import * as dagCbor from '@ipld/dag-cbor'
import { type Message, TopicValidatorResult } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { type Block, type BlockStore, type CommitEvent, DAG_CBOR } from '../dag/index.js'
import type { Logger, Metrics } from '../observability/index.js'
import { InvalidMessageError, type RejectReason } from './errors.js'
import type { IcnLibp2p } from './host.js'
import { decodeAnnouncement, encodeAnnouncement, MAX_BLOCKS_PER_ANNOUNCEMENT } from './messages.js'

/** The federation's block topic: every signed block, announced by its author's node as it is written. */
export function blocksTopic(federationId: string): string {
  return `/icn/${federationId}/blocks/1`
}

/** Store error codes mapped to gossip rejection reasons (each also a penalty for the sender). */
const REASONS: Record<string, RejectReason> = {
  BLOCK_TOO_LARGE: 'oversized',
  CID_MISMATCH: 'bad_cid',
  INVALID_CID: 'bad_cid',
  MALFORMED_BLOCK: 'malformed',
  VALUE_TOO_DEEP: 'malformed',
  UNSAFE_INTEGER: 'malformed',
  INVALID_SIGNATURE: 'bad_signature',
  PREV_MISMATCH: 'chain',
  UNANCHORED_CHUNK: 'not_signed',
  UNKNOWN_AUTHOR: 'unknown_author',
}

/** Room left in a message for its framing around the blocks. */
const FRAMING_BYTES = 1024

export interface GossipComponents {
  libp2p: IcnLibp2p
  store: BlockStore
  logger: Logger
  metrics: Metrics
  /** Is this DID one of the federation's nodes? Only their blocks travel. */
  isNode: (did: string) => boolean
  /** A valid block arrived whose chain has a gap here: fetch the chain up to `seq` from `peer`. */
  onGap: (peer: PeerId, chain: string, seq: number) => void
  onReceived: (peer: string, blocks: number) => void
  /** Blocks of this node's own announcements, counted per peer gossipsub sent them to. */
  onSent: (peer: string, blocks: number) => void
  /**
   * Resolves once the node's projections folded the blocks just stored (by CID), or cannot now, or after a
   * bound; the message is forwarded after it. Without it, forwarding follows the store.
   */
  settled?: (cids: string[]) => Promise<RelayWait>
}

/** How a relay's wait for the fold ended: nothing to wait for, folded (or cannot fold now), or its bound. */
export type RelayWait = 'none' | 'folded' | 'timeout'

/**
 * Block gossip. Outbound: blocks this node stores from its own writers, the API or an import are announced in
 * batches (what one turn of the event loop stored goes out together, split by the message size limit).
 * Inbound: the topic validator decodes each message and hands its blocks to the store, which checks size, CID,
 * encoding, signature and chain rules; the message is forwarded only if they pass, and a failure is a Reject
 * that gossipsub counts against the sender's score. `start` and `stop` are idempotent; it can be started again.
 */
export class BlockGossip {
  readonly topic: string
  private pending: Block[] = []
  private flushScheduled = false
  private unsubscribe?: () => void
  private stopped = true

  constructor(
    federationId: string,
    private readonly maxMessageBytes: number,
    private readonly c: GossipComponents,
  ) {
    this.topic = blocksTopic(federationId)
  }

  /** Subscribe, with the validator, and announce what the store commits. A second call does nothing. */
  start(): void {
    if (!this.stopped) return
    this.stopped = false
    const pubsub = this.c.libp2p.services.pubsub
    pubsub.topicValidators.set(this.topic, (peer, msg) => this.validate(peer, msg))
    pubsub.subscribe(this.topic)
    this.unsubscribe = this.c.store.onCommit((e) => this.onCommit(e))
  }

  /** Unsubscribe and drop the validator and the store listener. Before `start`, or a second time, it does nothing. */
  stop(): void {
    if (this.stopped) return
    this.stopped = true
    this.unsubscribe?.()
    this.unsubscribe = undefined
    const pubsub = this.c.libp2p.services.pubsub
    pubsub.topicValidators.delete(this.topic)
    try {
      pubsub.unsubscribe(this.topic)
    } catch {
      // already stopped
    }
  }

  /** Blocks written here (not those that came from peers: gossip forwards those itself). */
  private onCommit(e: CommitEvent): void {
    if (e.source === 'gossip' || e.source === 'sync' || this.stopped) return
    for (const b of e.blocks)
      if (b.kind === 'signed' && b.status === 'stored' && b.author && this.c.isNode(b.author))
        this.pending.push({ cid: b.cid, bytes: b.bytes })
    if (this.pending.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => void this.flush())
    }
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false
    const blocks = this.pending
    this.pending = []
    if (this.stopped) return
    try {
      for (const batch of this.batches(blocks)) await this.publish(batch)
    } catch (err) {
      // Not lost: peers fetch what they lack at the next anti-entropy round.
      this.c.logger.warn(
        { err, blocks: blocks.length },
        'announcing blocks failed; anti-entropy will carry them',
      )
    }
  }

  /** Split into messages under the size limit; a block too big for any message is left to anti-entropy. */
  private *batches(blocks: Block[]): Generator<Block[]> {
    const budget = this.maxMessageBytes - FRAMING_BYTES
    let batch: Block[] = []
    let size = 0
    for (const b of blocks) {
      const cost = b.bytes.length + 64
      if (cost > budget) {
        this.c.logger.debug({ cid: b.cid.toString(), bytes: b.bytes.length }, 'block too big for gossip')
        continue
      }
      if (batch.length > 0 && (size + cost > budget || batch.length >= MAX_BLOCKS_PER_ANNOUNCEMENT)) {
        yield batch
        batch = []
        size = 0
      }
      batch.push(b)
      size += cost
    }
    if (batch.length > 0) yield batch
  }

  private async publish(blocks: Block[]): Promise<void> {
    const data = encodeAnnouncement(blocks)
    const { recipients } = await this.c.libp2p.services.pubsub.publish(this.topic, data)
    for (const peer of recipients) this.c.onSent(peer.toString(), blocks.length)
    this.c.metrics.gossipMessages.inc({ direction: 'out' })
    this.c.metrics.gossipBlocks.inc({ direction: 'out' }, blocks.length)
  }

  /** The topic validator: every check, then the store; Accept only what the store took (or will, after a gap). */
  private async validate(peer: PeerId, msg: Message): Promise<TopicValidatorResult> {
    this.c.metrics.gossipMessages.inc({ direction: 'in' })
    const end = this.c.metrics.gossipValidation.startTimer()
    const result = await this.check(peer, msg)
    end({ result })
    return result
  }

  private async check(peer: PeerId, msg: Message): Promise<TopicValidatorResult> {
    const from = peer.toString()
    try {
      const ann = decodeAnnouncement(msg.data, this.maxMessageBytes)
      for (const b of ann.blocks)
        if (b.cid.code !== DAG_CBOR)
          throw new InvalidMessageError('not_signed', 'gossip carries signed blocks only')
      try {
        // The store decodes each block once and refuses one by a non-member before checking any signature.
        await this.c.store.putMany(ann.blocks, { source: 'gossip', peer: from, allowAuthor: this.c.isNode })
      } catch (err) {
        const code = (err as { code?: string }).code ?? ''
        if (code === 'CHAIN_GAP') {
          // Every block passed its own checks (the gap is found after them): forward it, and fetch the gap.
          const last = lastOfChains(ann.blocks)
          for (const [chain, seq] of last) this.c.onGap(peer, chain, seq)
          this.c.onReceived(from, 0)
          return TopicValidatorResult.Accept
        }
        const reason = REASONS[code]
        if (reason) throw new InvalidMessageError(reason, (err as Error).message, { cause: err })
        throw err
      }
      if (this.c.settled) {
        // Relay after the fold: on a host that runs many nodes, the fold would otherwise wait behind the
        // relay's sends and the other nodes' work (docs/architecture.md, "Relaying after the fold").
        const outcome = await this.c.settled(ann.blocks.map((b) => b.cid.toString()))
        if (outcome !== 'none') this.c.metrics.gossipFoldWaits.inc({ outcome })
      }
      this.c.onReceived(from, ann.blocks.length)
      this.c.metrics.gossipBlocks.inc({ direction: 'in' }, ann.blocks.length)
      return TopicValidatorResult.Accept
    } catch (err) {
      if (err instanceof InvalidMessageError) {
        this.c.metrics.gossipRejected.inc({ reason: err.reason })
        this.c.logger.warn({ peer: from, reason: err.reason, err: err.message }, 'gossip message rejected')
        return TopicValidatorResult.Reject
      }
      // Our failure (store down, stopping): not the sender's fault, so no penalty; anti-entropy catches up.
      this.c.metrics.gossipRejected.inc({ reason: 'store_unavailable' })
      this.c.logger.warn({ peer: from, err }, 'gossip message ignored: could not store it')
      return TopicValidatorResult.Ignore
    }
  }
}

/** Highest seq per chain among the blocks (decoded again: only reached after a gap, which is rare). */
function lastOfChains(blocks: Block[]): Map<string, number> {
  const out = new Map<string, number>()
  for (const b of blocks) {
    const { chain, seq } = dagCbor.decode(b.bytes) as { chain: string; seq: number }
    if ((out.get(chain) ?? -1) < seq) out.set(chain, seq)
  }
  return out
}
