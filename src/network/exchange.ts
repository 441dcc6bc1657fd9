import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Block, BlockStore, CID } from '../dag/index.js'
import type { Logger, Metrics } from '../observability/index.js'
import { describeError, ExchangeError } from './errors.js'
import type { IcnLibp2p } from './host.js'
import {
  decodeRequest,
  decodeResponse,
  type ExchangeRequest,
  type ExchangeResponse,
  encodeRequest,
  encodeResponse,
  type HeadInfo,
  MAX_HEADS_PER_RESPONSE,
  MAX_REQUEST_BYTES,
} from './messages.js'
import { FrameRequestError, StreamPool, serveFrames } from './streams.js'

/** The block-exchange protocol: requests and replies on one long-lived stream per peer. */
export const EXCHANGE_PROTOCOL = '/icn/block-exchange/1.0.0'

/** How long one request may take before its stream is given up. */
const REQUEST_TIMEOUT_MS = 30_000
/**
 * Streams a peer may have open to us at once on this protocol (each carries any number of requests), and the
 * streams we open to one peer: requests on one stream go one at a time, so a catch-up that fetches several
 * chains from one peer uses several.
 */
const MAX_STREAMS_PER_PEER = 4

export interface ExchangeLimits {
  maxBlocksPerResponse: number
  maxResponseBytes: number
}

export interface ExchangeComponents {
  libp2p: IcnLibp2p
  store: BlockStore
  logger: Logger
  metrics: Metrics
  /** Is this chain's writer a federation node? Only those chains are served and fetched. */
  isFederationChain: (chain: string) => boolean
  /** Federation peers this node knows, with addresses (for the `peers` request). */
  knownPeers: () => { peerId: string; addrs: string[] }[]
  /** Count blocks sent to a peer (peer health). */
  onSent: (peer: string, blocks: number) => void
  /** A peer broke the protocol (a malformed or oversized request): counted against it (peer health). */
  onMisbehaviour?: (peer: string, reason: string) => void
}

/**
 * Serves block-exchange requests and makes them, over the reused streams of `StreamPool` (streams.ts): opened
 * once and reused for every request; requests on a stream go one at a time, in order, and a request goes to an
 * idle stream to its peer, or a new one up to MAX_STREAMS_PER_PEER, or the least busy one.
 */
export class BlockExchange {
  private pool: StreamPool

  constructor(
    private readonly limits: ExchangeLimits,
    private readonly c: ExchangeComponents,
  ) {
    this.pool = this.newPool()
  }

  private newPool(): StreamPool {
    return new StreamPool(this.c.libp2p, {
      protocol: EXCHANGE_PROTOCOL,
      maxStreamsPerPeer: MAX_STREAMS_PER_PEER,
      maxReplyBytes: this.maxReplyBytes(),
    })
  }

  async start(): Promise<void> {
    await this.c.libp2p.handle(EXCHANGE_PROTOCOL, (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: MAX_STREAMS_PER_PEER,
    })
  }

  async stop(): Promise<void> {
    this.pool.close()
    this.pool = this.newPool()
    await this.c.libp2p.unhandle(EXCHANGE_PROTOCOL).catch(() => {})
  }

  /** Drop the client stream of a peer that disconnected. */
  forget(peer: string): void {
    this.pool.forget(peer)
  }

  async heads(peer: PeerId, signal?: AbortSignal): Promise<HeadInfo[]> {
    const all: HeadInfo[] = []
    let after: string | undefined
    for (;;) {
      const res = await this.request(
        peer,
        after === undefined ? { op: 'heads' } : { op: 'heads', after },
        signal,
      )
      if (!('heads' in res)) throw new ExchangeError('heads: wrong reply')
      all.push(...res.heads)
      if (!res.more || res.heads.length === 0) return all
      after = res.heads[res.heads.length - 1]!.chain
    }
  }

  async range(
    peer: PeerId,
    chain: string,
    from: number,
    limit: number,
    signal?: AbortSignal,
  ): Promise<Block[]> {
    const res = await this.request(peer, { op: 'range', chain, from, limit }, signal)
    if (!('blocks' in res)) throw new ExchangeError('range: wrong reply')
    return res.blocks
  }

  async get(peer: PeerId, cids: CID[], signal?: AbortSignal): Promise<Block[]> {
    const out: Block[] = []
    for (let i = 0; i < cids.length; i += this.limits.maxBlocksPerResponse) {
      const want = cids.slice(i, i + this.limits.maxBlocksPerResponse)
      const res = await this.request(peer, { op: 'get', cids: want }, signal)
      if (!('blocks' in res)) throw new ExchangeError('get: wrong reply')
      out.push(...res.blocks)
    }
    return out
  }

  async peers(peer: PeerId, signal?: AbortSignal): Promise<{ peerId: string; addrs: string[] }[]> {
    const res = await this.request(peer, { op: 'peers' }, signal)
    if (!('peers' in res)) throw new ExchangeError('peers: wrong reply')
    return res.peers
  }

  private async request(peer: PeerId, req: ExchangeRequest, signal?: AbortSignal): Promise<ExchangeResponse> {
    const end = this.c.metrics.exchangeDuration.startTimer({ op: req.op, role: 'client' })
    try {
      let data: Uint8Array
      try {
        data = await this.pool.request(peer, encodeRequest(req), { signal, timeoutMs: REQUEST_TIMEOUT_MS })
      } catch (err) {
        const cause = err instanceof FrameRequestError && err.cause !== undefined ? err.cause : err
        throw new ExchangeError(`${req.op} request to ${peer} failed: ${describeError(cause)}`, {
          cause: err,
        })
      }
      const res = decodeResponse(data, req.op, this.maxReplyBytes())
      end({ outcome: 'ok' })
      return res
    } catch (err) {
      end({ outcome: 'error' })
      throw err
    }
  }

  /** A reply's bytes: the block budget plus room for the largest single block and framing. */
  private maxReplyBytes(): number {
    return this.limits.maxResponseBytes + 2 * 1024 * 1024 + 64 * 1024
  }

  /** Handle one inbound stream: answer requests until the peer closes it. Never throws. */
  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const log = this.c.logger.child({ peer })
    await serveFrames(stream, connection, {
      maxRequestBytes: MAX_REQUEST_BYTES,
      logger: log,
      onBroken: () => this.c.onMisbehaviour?.(peer, 'oversized'),
      answer: async (data) => {
        const end = this.c.metrics.exchangeDuration.startTimer({ op: 'unknown', role: 'server' })
        let res: ExchangeResponse
        let op = 'unknown'
        try {
          const req = decodeRequest(data, this.limits.maxBlocksPerResponse)
          op = req.op
          res = await this.answer(req, peer)
        } catch (err) {
          const e = err as { code?: string; message?: string; reason?: string }
          if (e.code === 'INVALID_MESSAGE') this.c.onMisbehaviour?.(peer, e.reason ?? 'malformed')
          res = { error: { code: e.code ?? 'FAILED', message: e.message ?? String(err) } }
          log.debug({ err, op }, 'exchange request refused')
        }
        end({ op, outcome: 'error' in res ? 'error' : 'ok' })
        return encodeResponse(res)
      },
    })
  }

  private async answer(req: ExchangeRequest, peer: string): Promise<ExchangeResponse> {
    const { store } = this.c
    switch (req.op) {
      case 'heads': {
        const heads = (await store.chainHeads())
          .filter(
            (h) => this.c.isFederationChain(h.chain) && (req.after === undefined || h.chain > req.after),
          )
          .sort((a, b) => (a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : 0))
        const page = heads.slice(0, MAX_HEADS_PER_RESPONSE)
        return {
          heads: page.map((h) => ({ chain: h.chain, seq: h.seq, cid: h.cid })),
          more: heads.length > page.length,
        }
      }
      case 'range': {
        if (!this.c.isFederationChain(req.chain)) return { blocks: [], more: false }
        const limit = Math.min(req.limit, this.limits.maxBlocksPerResponse)
        const { chain, from } = req
        // One query for the page (positions in order, up to the first the store does not hold).
        const page = await this.page(await store.chainRange(chain, from, limit), peer)
        if (!page.more && page.blocks.length === limit)
          page.more = (await store.chainEntry(chain, from + limit)) !== undefined
        return page
      }
      case 'get': {
        const cids = req.cids
        // The blocks asked for that the store holds; absent ones are left out.
        async function* present(): AsyncGenerator<Block | undefined> {
          for (const cid of cids) {
            const data = await getIfPresent(store, cid)
            yield data ? { cid, bytes: data } : undefined
          }
        }
        return this.page(present(), peer)
      }
      case 'peers':
        return { peers: this.c.knownPeers().filter((p) => p.peerId !== peer) }
    }
  }

  /** Collect blocks into one reply, up to maxResponseBytes (at least one block); `more` if some were left. */
  private async page(
    source: AsyncIterable<Block | undefined> | Iterable<Block | undefined>,
    peer: string,
  ): Promise<{ blocks: Block[]; more: boolean }> {
    const blocks: Block[] = []
    let bytes = 0
    let more = false
    for await (const b of source) {
      if (!b) continue
      if (blocks.length > 0 && bytes + b.bytes.length > this.limits.maxResponseBytes) {
        more = true
        break
      }
      blocks.push(b)
      bytes += b.bytes.length
    }
    this.c.onSent(peer, blocks.length)
    this.c.metrics.exchangeBlocks.inc({ direction: 'sent' }, blocks.length)
    return { blocks, more }
  }
}

async function getIfPresent(store: BlockStore, cid: CID): Promise<Uint8Array | undefined> {
  try {
    return await store.get(cid)
  } catch (err) {
    if ((err as { code?: string }).code === 'NOT_FOUND') return undefined
    throw err
  }
}
