import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { type LengthPrefixedStream, lpStream } from '@libp2p/utils'
import type { Logger } from '../observability/index.js'
import type { IcnLibp2p } from './host.js'

/**
 * Request/response over reused libp2p streams, the transport under both the block exchange and the generic RPC:
 * length-prefixed frames, one request at a time per stream, in order; a pool of up to `maxStreamsPerPeer`
 * streams per peer, opened once and reused (opening a stream costs about 8x a request on an open one). A request
 * goes to an idle stream to its peer, else a new one up to the limit, else the least busy one.
 */

/** Why a framed request failed, for the protocol on top to turn into its own typed error. */
export type FrameFailure =
  /** No stream could be opened: the peer is not connected and cannot be dialed, or refused the protocol. */
  | 'dial'
  /** The peer does not speak the stream protocol at all. */
  | 'unsupported'
  /** No reply within the timeout. */
  | 'timeout'
  /** The caller's signal aborted. */
  | 'aborted'
  /** The reply frame is over the reply limit (the peer broke the limit: misbehaviour). */
  | 'oversized'
  /** The stream broke or was closed before the reply came. */
  | 'stream'
  /** The pool was closed (the network is stopping). */
  | 'closed'

/** A framed request that failed; `failure` says how, `cause` is the underlying error. Internal to the network. */
export class FrameRequestError extends Error {
  override readonly name = 'FrameRequestError'
  constructor(
    readonly failure: FrameFailure,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options)
  }
}

export interface StreamPoolOptions {
  /** The libp2p protocol id the streams are opened on. */
  protocol: string
  maxStreamsPerPeer: number
  /** Largest reply frame accepted (the length prefix is checked before the frame is read). */
  maxReplyBytes: number
}

/** Client side: a pool of reused streams per peer. */
export class StreamPool {
  private readonly clients = new Map<string, PeerClient[]>()

  constructor(
    private readonly libp2p: IcnLibp2p,
    private readonly opts: StreamPoolOptions,
  ) {}

  /** Send one frame to `peer` and return its reply frame; throws FrameRequestError. */
  request(
    peer: PeerId,
    frame: Uint8Array,
    options: { signal?: AbortSignal; timeoutMs: number },
  ): Promise<Uint8Array> {
    return this.clientFor(peer).request(frame, options)
  }

  /** Drop the streams to a peer that disconnected. */
  forget(peer: string): void {
    for (const client of this.clients.get(peer) ?? []) client.close()
    this.clients.delete(peer)
  }

  /** Close every stream; later requests fail with `closed`. */
  close(): void {
    for (const clients of this.clients.values()) for (const client of clients) client.close()
    this.clients.clear()
  }

  private clientFor(peer: PeerId): PeerClient {
    const key = peer.toString()
    let clients = this.clients.get(key)
    if (!clients) {
      clients = []
      this.clients.set(key, clients)
    }
    let best: PeerClient | undefined
    for (const client of clients) if (!best || client.pending < best.pending) best = client
    if (best && (best.pending === 0 || clients.length >= this.opts.maxStreamsPerPeer)) return best
    const client = new PeerClient(peer, this.libp2p, this.opts)
    clients.push(client)
    return client
  }
}

/** One client stream to a peer: requests in order. */
class PeerClient {
  /** Requests sent or queued on this stream and not yet answered. */
  pending = 0
  private lp?: LengthPrefixedStream<Stream>
  /** The stream under `lp` (unwrapping `lp` would end its framing, so its state is read here). */
  private raw?: Stream
  private opening?: Promise<{ lp: LengthPrefixedStream<Stream>; raw: Stream }>
  private tail: Promise<unknown> = Promise.resolve()
  private closed = false

  constructor(
    private readonly peer: PeerId,
    private readonly libp2p: IcnLibp2p,
    private readonly opts: StreamPoolOptions,
  ) {}

  request(frame: Uint8Array, options: { signal?: AbortSignal; timeoutMs: number }): Promise<Uint8Array> {
    this.pending++
    const run = this.tail.then(() => this.send(frame, options)).finally(() => this.pending--)
    this.tail = run.catch(() => {})
    return run
  }

  close(): void {
    this.closed = true
    const lp = this.lp
    this.lp = undefined
    this.raw = undefined
    if (lp)
      lp.unwrap()
        .close()
        .catch(() => lp.unwrap().abort(new Error('closed')))
  }

  private async stream(signal: AbortSignal): Promise<LengthPrefixedStream<Stream>> {
    if (this.lp) {
      // A stream the peer closed or reset since the last request (its node restarted its RPC, or aborted the
      // stream) is replaced before anything is written on it, so the request is not lost to a dead stream.
      const s = this.raw
      if (!s || (s.status === 'open' && s.writeStatus === 'writable' && s.remoteWriteStatus === 'writable'))
        return this.lp
      this.lp = undefined
      this.raw = undefined
      s.abort(new Error('stale stream'))
    }
    this.opening ??= this.libp2p
      .dialProtocol(this.peer, this.opts.protocol, { signal })
      .then((raw) => ({ raw, lp: lpStream(raw, { maxDataLength: this.opts.maxReplyBytes }) }))
      .finally(() => {
        this.opening = undefined
      })
    try {
      const opened = await this.opening
      this.lp = opened.lp
      this.raw = opened.raw
    } catch (err) {
      if (signal.aborted) throw err
      const name = (err as Error)?.name
      throw new FrameRequestError(
        name === 'UnsupportedProtocolError' ? 'unsupported' : 'dial',
        `cannot open a ${this.opts.protocol} stream to ${this.peer}`,
        { cause: err },
      )
    }
    return this.lp
  }

  private async send(
    frame: Uint8Array,
    options: { signal?: AbortSignal; timeoutMs: number },
  ): Promise<Uint8Array> {
    const outer = options.signal
    if (this.closed) throw new FrameRequestError('closed', 'the stream pool is closed')
    if (outer?.aborted) throw new FrameRequestError('aborted', 'request aborted', { cause: outer.reason })
    const timeout = AbortSignal.timeout(options.timeoutMs)
    const signal = outer ? AbortSignal.any([outer, timeout]) : timeout
    let lp: LengthPrefixedStream<Stream> | undefined
    try {
      lp = await this.stream(signal)
      await lp.write(frame, { signal })
      return (await lp.read({ signal })).subarray()
    } catch (err) {
      // A failed or timed-out request leaves the stream in an unknown state: drop it, the next one reopens.
      if (lp && this.lp === lp) {
        this.lp = undefined
        this.raw = undefined
        lp.unwrap().abort(err instanceof Error ? err : new Error(String(err)))
      }
      if (err instanceof FrameRequestError) throw err
      if (outer?.aborted) throw new FrameRequestError('aborted', 'request aborted', { cause: err })
      if (timeout.aborted)
        throw new FrameRequestError('timeout', `no reply within ${options.timeoutMs} ms`, { cause: err })
      if ((err as Error)?.name === 'InvalidDataLengthError')
        throw new FrameRequestError('oversized', `reply over ${this.opts.maxReplyBytes} bytes`, {
          cause: err,
        })
      throw new FrameRequestError('stream', 'the stream failed before the reply came', { cause: err })
    }
  }
}

/** The stream ended in one of the usual ways (closed, reset), not through a broken frame. */
export function isEndOfStream(err: unknown): boolean {
  const name = (err as Error)?.name
  return name === 'UnexpectedEOFError' || name === 'StreamClosedError' || name === 'StreamResetError'
}

export interface ServeOptions {
  /** Largest request frame accepted; a bigger one breaks the stream (and `onBroken` hears of it). */
  maxRequestBytes: number
  /** Answer one request frame with its reply frame. Must not throw. */
  answer: (frame: Uint8Array) => Promise<Uint8Array>
  /** The peer broke the framing (a frame over the limit, a bad length prefix): the stream is aborted. */
  onBroken?: (err: unknown) => void
  logger: Logger
}

/** Server side: answer the requests on one inbound stream, in order, until the peer closes it. Never throws. */
export async function serveFrames(stream: Stream, connection: Connection, opts: ServeOptions): Promise<void> {
  const lp = lpStream(stream, { maxDataLength: opts.maxRequestBytes })
  try {
    for (;;) {
      let data: Uint8Array
      try {
        data = (await lp.read()).subarray()
      } catch (err) {
        if (isEndOfStream(err)) break
        opts.onBroken?.(err)
        throw err
      }
      await lp.write(await opts.answer(data))
    }
    await stream.close().catch(() => stream.abort(new Error('close failed')))
  } catch (err) {
    opts.logger.debug({ err, peer: connection.remotePeer.toString() }, 'stream ended with an error')
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
}
