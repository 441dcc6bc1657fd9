import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils'
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
}

/**
 * Serves block-exchange requests and makes them. Streams are opened once and reused for every request (opening
 * a stream costs about 8x a request on an open one); requests on a stream go one at a time, in order, and a
 * request goes to an idle stream to its peer, or a new one up to MAX_STREAMS_PER_PEER, or the least busy one.
 */
export class BlockExchange {
  private readonly clients = new Map<string, PeerClient[]>()

  constructor(
    private readonly limits: ExchangeLimits,
    private readonly c: ExchangeComponents,
  ) {}

  async start(): Promise<void> {
    await this.c.libp2p.handle(EXCHANGE_PROTOCOL, (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: MAX_STREAMS_PER_PEER,
    })
  }

  async stop(): Promise<void> {
    for (const clients of this.clients.values()) for (const client of clients) client.close()
    this.clients.clear()
    await this.c.libp2p.unhandle(EXCHANGE_PROTOCOL).catch(() => {})
  }

  /** Drop the client stream of a peer that disconnected. */
  forget(peer: string): void {
    for (const client of this.clients.get(peer) ?? []) client.close()
    this.clients.delete(peer)
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
    const client = this.clientFor(peer)
    const end = this.c.metrics.exchangeDuration.startTimer({ op: req.op, role: 'client' })
    try {
      const res = await client.request(req, signal)
      end({ outcome: 'ok' })
      return res
    } catch (err) {
      end({ outcome: 'error' })
      throw err
    }
  }

  /** An idle stream to the peer, else a new one (up to the limit), else the one with the fewest requests. */
  private clientFor(peer: PeerId): PeerClient {
    const key = peer.toString()
    let clients = this.clients.get(key)
    if (!clients) {
      clients = []
      this.clients.set(key, clients)
    }
    let best: PeerClient | undefined
    for (const client of clients) if (!best || client.pending < best.pending) best = client
    if (best && (best.pending === 0 || clients.length >= MAX_STREAMS_PER_PEER)) return best
    const client = new PeerClient(peer, this.c.libp2p, this.maxReplyBytes())
    clients.push(client)
    return client
  }

  /** A reply's bytes: the block budget plus room for the largest single block and framing. */
  private maxReplyBytes(): number {
    return this.limits.maxResponseBytes + 2 * 1024 * 1024 + 64 * 1024
  }

  /** Handle one inbound stream: answer requests until the peer closes it. Never throws. */
  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES })
    const log = this.c.logger.child({ peer })
    try {
      for (;;) {
        let data: Uint8Array
        try {
          data = (await lp.read()).subarray()
        } catch (err) {
          if (isEndOfStream(err)) break
          throw err
        }
        const end = this.c.metrics.exchangeDuration.startTimer({ op: 'unknown', role: 'server' })
        let res: ExchangeResponse
        let op = 'unknown'
        try {
          const req = decodeRequest(data, this.limits.maxBlocksPerResponse)
          op = req.op
          res = await this.answer(req, peer)
        } catch (err) {
          const e = err as { code?: string; message?: string }
          res = { error: { code: e.code ?? 'FAILED', message: e.message ?? String(err) } }
          log.debug({ err, op }, 'exchange request refused')
        }
        await lp.write(encodeResponse(res))
        end({ op, outcome: 'error' in res ? 'error' : 'ok' })
      }
      await stream.close().catch(() => stream.abort(new Error('close failed')))
    } catch (err) {
      log.debug({ err }, 'exchange stream ended with an error')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
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

function isEndOfStream(err: unknown): boolean {
  const name = (err as Error)?.name
  return name === 'UnexpectedEOFError' || name === 'StreamClosedError' || name === 'StreamResetError'
}

/** One client stream to a peer: requests in order. */
class PeerClient {
  /** Requests sent or queued on this stream and not yet answered. */
  pending = 0
  private lp?: LengthPrefixedStream<Stream>
  private opening?: Promise<LengthPrefixedStream<Stream>>
  private tail: Promise<unknown> = Promise.resolve()
  private closed = false

  constructor(
    private readonly peer: PeerId,
    private readonly libp2p: IcnLibp2p,
    private readonly maxReplyBytes: number,
  ) {}

  request(req: ExchangeRequest, signal?: AbortSignal): Promise<ExchangeResponse> {
    this.pending++
    const run = this.tail.then(() => this.send(req, signal)).finally(() => this.pending--)
    this.tail = run.catch(() => {})
    return run
  }

  close(): void {
    this.closed = true
    const lp = this.lp
    this.lp = undefined
    if (lp)
      lp.unwrap()
        .close()
        .catch(() => lp.unwrap().abort(new Error('closed')))
  }

  private async stream(signal: AbortSignal): Promise<LengthPrefixedStream<Stream>> {
    if (this.closed) throw new ExchangeError('exchange client closed')
    if (this.lp) return this.lp
    this.opening ??= this.libp2p
      .dialProtocol(this.peer, EXCHANGE_PROTOCOL, { signal })
      .then((s) => lpStream(s, { maxDataLength: this.maxReplyBytes }))
      .finally(() => {
        this.opening = undefined
      })
    this.lp = await this.opening
    return this.lp
  }

  private async send(req: ExchangeRequest, outer?: AbortSignal): Promise<ExchangeResponse> {
    const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
    const signal = outer ? AbortSignal.any([outer, timeout]) : timeout
    let lp: LengthPrefixedStream<Stream> | undefined
    try {
      lp = await this.stream(signal)
      await lp.write(encodeRequest(req), { signal })
      const data = (await lp.read({ signal })).subarray()
      return decodeResponse(data, req.op, this.maxReplyBytes)
    } catch (err) {
      // A failed or timed-out request leaves the stream in an unknown state: drop it, the next one reopens.
      if (lp && this.lp === lp) {
        this.lp = undefined
        lp.unwrap().abort(err instanceof Error ? err : new Error(String(err)))
      }
      if ((err as { code?: string }).code === 'EXCHANGE_FAILED') throw err
      if ((err as { code?: string }).code === 'INVALID_MESSAGE') throw err
      throw new ExchangeError(`${req.op} request to ${this.peer} failed: ${describeError(err)}`, {
        cause: err,
      })
    }
  }
}
