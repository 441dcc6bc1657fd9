import * as dagCbor from '@ipld/dag-cbor'
import type { PeerId } from '@libp2p/interface'
import { type BulkheadPolicy, bulkhead } from 'cockatiel'
import {
  type Block,
  type BlockStore,
  type CID,
  type CommitEvent,
  DAG_CBOR,
  isInputError,
  RAW,
  type SignedBlock,
} from '../dag/index.js'
import type { Logger, Metrics } from '../observability/index.js'
import { type Clock, systemClock } from './clock.js'
import { describeError, InvalidMessageError } from './errors.js'
import type { BlockExchange } from './exchange.js'
import type { HeadInfo } from './messages.js'

export interface SyncComponents {
  store: BlockStore
  exchange: BlockExchange
  logger: Logger
  metrics: Metrics
  isFederationChain: (chain: string) => boolean
  /** Peers to compare with at each round (connected federation peers). */
  peers: () => PeerId[]
  onReceived: (peer: string, blocks: number) => void
  /** A peer's reply broke the protocol (malformed, wrong chain): counted against it (peer health). */
  onMisbehaviour?: (peer: string, reason: string) => void
  /** Addresses learnt from a peer's `peers` reply. */
  onPeerAddresses: (peers: { peerId: string; addrs: string[] }[]) => void
  /**
   * Whether a new connection's round should ask the peer for addresses (default: always). The network asks
   * only while some member is neither connected nor reachable at a known address.
   */
  needsAddresses?: () => Promise<boolean>
  clock?: Clock
  /** Uniform in [0, 1), to pick the peer of a periodic round. */
  random?: () => number
}

export interface SyncOptions {
  intervalMs: number
  pageSize: number
  /** Chains fetched at once, over all peers (each with up to two pages in memory). Default 4. */
  concurrentChains?: number
}

const DEFAULT_CONCURRENT_CHAINS = 4

/** What one anti-entropy round with a peer did. */
export interface SyncRound {
  peer: string
  chainsBehind: number
  fetched: number
  lag: number
}

/**
 * Anti-entropy and gap filling. With each peer, on connect and every `intervalMs`: fetch its chain heads, and
 * for every federation chain where it is ahead, fetch the missing blocks in pages (the next page is requested
 * while the last is stored). A different block at a position both hold is fetched too: the store keeps it as
 * evidence of equivocation. Raw chunks linked by synced or gossiped blocks are fetched after them.
 * `start` and `stop` are idempotent; it can be started again.
 */
export class Synchronizer {
  private timer?: unknown
  private started = false
  private readonly clock: Clock
  private readonly random: () => number
  private readonly running = new Map<string, Promise<SyncRound | undefined>>()
  private readonly filling = new Map<string, { peer: PeerId; seq: number; run: Promise<void> }>()
  /** Chains being fetched now: rounds with several peers (all of them right after a restart) share the work. */
  private readonly fetching = new Map<string, Promise<number>>()
  private controller = new AbortController()
  private unsubscribe?: () => void
  /** Caps the chain fetches under way (queued ones wait): memory stays bounded however many chains lag. */
  private readonly fetchSlots: BulkheadPolicy
  private readonly concurrentChains: number

  constructor(
    private readonly opts: SyncOptions,
    private readonly c: SyncComponents,
  ) {
    this.concurrentChains = opts.concurrentChains ?? DEFAULT_CONCURRENT_CHAINS
    this.fetchSlots = bulkhead(this.concurrentChains, Number.POSITIVE_INFINITY)
    this.clock = c.clock ?? systemClock
    this.random = c.random ?? Math.random
  }

  /** The chain-fetch gauge: running ones hold a slot; `fetching` holds them and the queued ones. */
  private updateFetchGauge(): void {
    const running = this.concurrentChains - this.fetchSlots.executionSlots
    this.c.metrics.syncChainFetches.set({ state: 'running' }, running)
    this.c.metrics.syncChainFetches.set({ state: 'queued' }, Math.max(0, this.fetching.size - running))
  }

  /** Start the periodic rounds and the chunk fetcher. A second call does nothing. */
  start(): void {
    if (this.started) return
    this.started = true
    if (this.controller.signal.aborted) this.controller = new AbortController()
    this.schedule()
    this.unsubscribe = this.c.store.onCommit((e) => this.fetchChunksOf(e))
  }

  /** Stop the rounds and abort those under way. Before `start`, or a second time, it does nothing. */
  stop(): void {
    if (!this.started) return
    this.started = false
    this.clock.clearTimeout(this.timer)
    this.timer = undefined
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.controller.abort()
  }

  // Each period, one peer picked at random: every pair of nodes still compares heads every few periods,
  // at a cost that does not grow with the size of the federation. A new connection is synced at once.
  private schedule(): void {
    this.timer = this.clock.setTimeout(() => {
      if (!this.started) return
      this.schedule()
      const peers = this.c.peers()
      const peer = peers[Math.floor(this.random() * peers.length)]
      if (peer) void this.syncWith(peer, { learnPeers: false })
    }, this.opts.intervalMs)
  }

  /** A peer's reply was refused (it broke the protocol or sent blocks the store refuses): counted, logged. */
  private failed(what: string, fields: Record<string, unknown>, err: unknown): void {
    if (this.controller.signal.aborted) return
    const reason =
      err instanceof InvalidMessageError
        ? err.reason
        : isInputError(err)
          ? (err as { code: string }).code
          : undefined
    if (reason) this.c.metrics.syncRejected.inc({ reason })
    const peer = fields.peer
    if (err instanceof InvalidMessageError && typeof peer === 'string')
      this.c.onMisbehaviour?.(peer, err.reason)
    this.c.logger.info(
      { ...fields, ...(reason ? { reason } : {}), err: describeError(err) },
      `${what} failed`,
    )
  }

  /**
   * One anti-entropy round with a peer; rounds with one peer never overlap. Never throws. With `learnPeers`
   * (the default: on a new connection), it also asks the peer for the addresses of the nodes it knows.
   */
  syncWith(peer: PeerId, opts: { learnPeers?: boolean } = {}): Promise<SyncRound | undefined> {
    const key = peer.toString()
    const existing = this.running.get(key)
    if (existing) return existing
    const run = this.round(peer, opts.learnPeers !== false)
      .catch((err: unknown) => {
        this.failed('anti-entropy round', { peer: key }, err)
        return undefined
      })
      .finally(() => this.running.delete(key))
    this.running.set(key, run)
    return run
  }

  /** A gossiped block showed a gap: fetch its chain from `peer` up to `seq` (one fill per chain at a time). */
  fill(peer: PeerId, chain: string, seq: number): void {
    const current = this.filling.get(chain)
    if (current) {
      current.seq = Math.max(current.seq, seq)
      return
    }
    const entry = { peer, seq, run: Promise.resolve() }
    entry.run = (async () => {
      try {
        for (;;) {
          const target = entry.seq
          await this.catchUpChain(entry.peer, chain, target)
          if (entry.seq === target) return
        }
      } catch (err) {
        this.failed('gap fill', { peer: peer.toString(), chain }, err)
      } finally {
        this.filling.delete(chain)
      }
    })()
    this.filling.set(chain, entry)
  }

  private async round(peer: PeerId, learnPeers: boolean): Promise<SyncRound> {
    const signal = this.controller.signal
    const key = peer.toString()
    const theirs = (await this.c.exchange.heads(peer, signal)).filter((h) =>
      this.c.isFederationChain(h.chain),
    )
    const ours = new Map((await this.c.store.chainHeads()).map((h) => [h.chain, h]))
    const behind: { head: HeadInfo; from: number }[] = []
    let lag = 0
    for (const h of theirs) {
      const mine = ours.get(h.chain)
      if (!mine || mine.seq < h.seq) {
        behind.push({ head: h, from: mine ? mine.seq + 1 : 0 })
        lag += h.seq - (mine?.seq ?? -1)
      } else {
        // Both hold position h.seq: a different block there is an equivocation, kept as evidence.
        const at = mine.seq === h.seq ? mine.cid : await this.c.store.chainEntry(h.chain, h.seq)
        if (at && !at.equals(h.cid)) await this.fetchEvidence(peer, h)
      }
    }
    this.c.metrics.syncLag.set({ peer: key }, lag)
    // Several chains at once, and first those no other round is fetching: right after a restart every peer's
    // round lists the same chains, and each takes different ones instead of queueing behind the first.
    let fetched = 0
    let failed = false
    const next = async (): Promise<void> => {
      while (behind.length > 0 && !failed) {
        const free = behind.findIndex((b) => !this.fetching.has(b.head.chain))
        const { head } = behind.splice(Math.max(free, 0), 1)[0]!
        try {
          fetched += await this.catchUpChain(peer, head.chain, head.seq)
        } catch (err) {
          failed = true
          throw err
        }
        this.c.metrics.syncLag.set({ peer: key }, Math.max(0, lag - fetched))
      }
    }
    const chainsBehind = behind.length
    await Promise.all(Array.from({ length: Math.min(this.concurrentChains, behind.length) }, next))
    this.c.metrics.syncLag.set({ peer: key }, 0)
    if (learnPeers && (await (this.c.needsAddresses?.() ?? true))) {
      try {
        this.c.onPeerAddresses(await this.c.exchange.peers(peer, signal))
      } catch (err) {
        this.c.logger.debug({ peer: key, err: describeError(err) }, 'peers request failed')
      }
    }
    if (fetched > 0) this.c.logger.info({ peer: key, chains: chainsBehind, fetched }, 'caught up from peer')
    return { peer: key, chainsBehind, fetched, lag }
  }

  /**
   * Bring a chain up to position `target` from `peer`, unless another fetch of it is under way: then wait for
   * that one and fetch only what is still missing. Returns the blocks this call stored.
   */
  private async catchUpChain(peer: PeerId, chain: string, target: number): Promise<number> {
    for (;;) {
      const busy = this.fetching.get(chain)
      if (busy) {
        await busy.catch(() => 0)
        continue
      }
      const head = await this.c.store.chainHead(chain)
      const from = head ? head.seq + 1 : 0
      if (from > target) return 0
      if (this.fetching.has(chain)) continue
      const queued = this.clock.now()
      let started = queued
      const run = this.fetchSlots.execute(() => {
        started = this.clock.now()
        this.updateFetchGauge()
        return this.fetchChain(peer, chain, from, target)
      }, this.controller.signal)
      this.fetching.set(chain, run)
      this.updateFetchGauge()
      try {
        const n = await run
        this.c.logger.info(
          {
            peer: peer.toString(),
            chain,
            from,
            to: target,
            fetched: n,
            started,
            ms: this.clock.now() - started,
          },
          'chain fetched',
        )
        return n
      } finally {
        this.fetching.delete(chain)
        this.updateFetchGauge()
      }
    }
  }

  /** Fetch and store positions from..to of a chain; the next page is requested while this one is stored. */
  private async fetchChain(peer: PeerId, chain: string, from: number, to: number): Promise<number> {
    const signal = this.controller.signal
    const key = peer.toString()
    const page = this.opts.pageSize
    // Marked as handled at once: a page that fails while the previous one is being stored must not count as
    // an unhandled rejection; it is awaited (and its error thrown) at the next turn of the loop.
    const request = (start: number): Promise<Block[]> => {
      const p = this.c.exchange.range(peer, chain, start, Math.min(page, to - start + 1), signal)
      p.catch(() => {})
      return p
    }
    let next = request(from)
    let fetched = 0
    let at = from
    for (;;) {
      const blocks = await next
      if (blocks.length === 0) break
      const first = at
      if (blocks.some((b) => b.cid.code !== DAG_CBOR))
        throw new InvalidMessageError('chain', `${key} sent a raw chunk in a range of ${chain}`)
      at += blocks.length
      const more = at <= to
      if (more) next = request(at)
      try {
        // The positions are checked as the store decodes each block (no second decode here).
        await this.c.store.putMany(blocks, {
          source: 'sync',
          peer: key,
          signal,
          inspect: (b, i) => expectPosition(key, b, chain, first + i),
        })
      } catch (err) {
        if ((err as { code?: string }).code === 'PREV_MISMATCH') {
          // The peer's chain forks from ours below its head: fetch its block at our head, kept as evidence.
          const head = await this.c.store.chainHead(chain)
          if (head) {
            const theirs = await this.c.exchange.range(peer, chain, head.seq, 1, signal)
            checkPositions(key, theirs, chain, head.seq)
            await this.fetchEvidenceBlocks(key, theirs)
          }
        }
        throw err
      }
      fetched += blocks.length
      this.c.metrics.syncBlocks.inc(blocks.length)
      this.c.onReceived(key, blocks.length)
      if (!more) break
    }
    return fetched
  }

  private async fetchEvidence(peer: PeerId, head: HeadInfo): Promise<void> {
    const blocks = await this.c.exchange.get(peer, [head.cid], this.controller.signal)
    checkPositions(peer.toString(), blocks, head.chain, head.seq)
    await this.fetchEvidenceBlocks(peer.toString(), blocks)
  }

  private async fetchEvidenceBlocks(peer: string, blocks: Block[]): Promise<void> {
    if (blocks.length === 0) return
    const results = await this.c.store.putMany(blocks, { source: 'sync', peer })
    if (results.some((r) => r.status === 'equivocation'))
      this.c.logger.warn(
        { peer, cids: results.map((r) => r.cid.toString()) },
        'equivocation found during sync',
      )
  }

  /** Chunks of values that arrived from peers: fetch the ones not here from the same peer. */
  private fetchChunksOf(e: CommitEvent): void {
    if ((e.source !== 'gossip' && e.source !== 'sync') || !e.peer) return
    const raw: CID[] = []
    for (const b of e.blocks) for (const l of b.links ?? []) if (l.code === RAW) raw.push(l)
    if (raw.length === 0) return
    const peerKey = e.peer
    const peer = this.c.peers().find((p) => p.toString() === peerKey)
    if (!peer) return
    void (async () => {
      const missing: CID[] = []
      for (const cid of raw) if (!(await this.c.store.has(cid))) missing.push(cid)
      if (missing.length === 0) return
      // Only the chunks asked for: a peer's reply may not slip in other blocks.
      const chunks = (await this.c.exchange.get(peer, missing, this.controller.signal)).filter((b) =>
        missing.some((m) => m.equals(b.cid)),
      )
      if (chunks.length > 0) await this.c.store.putMany(chunks, { source: 'sync', peer: peerKey })
      this.c.onReceived(peerKey, chunks.length)
    })().catch((err: unknown) => this.failed('fetching value chunks', { peer: peerKey }, err))
  }
}

/**
 * A peer's reply must hold the chain positions asked for, from `from` on, and nothing else: the store checks a
 * block's signature and links, not which chain it is, so without this a peer could slip in blocks of a chain
 * whose writer is not a federation node (which gossip refuses as unknown_author).
 */
function expectPosition(peer: string, b: SignedBlock, chain: string, seq: number): void {
  if (b.chain !== chain || b.seq !== seq)
    throw new InvalidMessageError('chain', `${peer} sent a block that is not ${chain} #${seq}`)
}

function checkPositions(peer: string, blocks: Block[], chain: string, from: number): void {
  for (const [i, b] of blocks.entries()) {
    let rec: { chain?: unknown; seq?: unknown } | null | undefined
    try {
      if (b.cid.code === DAG_CBOR) rec = dagCbor.decode(b.bytes)
    } catch {
      // not DAG-CBOR: refused below
    }
    if (rec?.chain !== chain || rec.seq !== from + i)
      throw new InvalidMessageError('chain', `${peer} sent a block that is not ${chain} #${from + i}`)
  }
}
