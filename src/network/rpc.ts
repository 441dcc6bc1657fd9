import * as dagCbor from '@ipld/dag-cbor'
import type { Connection, Stream } from '@libp2p/interface'
import { AbortedError, checkCborLimits } from '../dag/index.js'
import { IcnError } from '../identity/index.js'
import type { Logger, Metrics } from '../observability/index.js'
import {
  describeError,
  MessageTooLargeError,
  PeerUnreachableError,
  RemoteError,
  RpcHandlerError,
  RpcMalformedError,
  RpcTimeoutError,
  UnknownProtocolError,
} from './errors.js'
import type { IcnLibp2p } from './host.js'
import { didFromPeerId, peerIdFromDid } from './peer-id.js'
import { type FrameRequestError, StreamPool, serveFrames } from './streams.js'

/**
 * Node-to-node RPC: a request to one named federation node and its reply, for the protocols of the domain
 * modules (forwarded member records, bids, vote relay). One libp2p protocol, `/icn/rpc/1.0.0`, carries every
 * RPC protocol: length-prefixed DAG-CBOR envelopes on streams reused per peer (streams.ts), one request at a time
 * per stream, several streams per peer. Limits are checked on the bytes before anything is decoded. A handler's
 * typed error reaches the caller with its code, message and details. See docs/protocol.md ("Node-to-node RPC").
 */

/** The libp2p protocol of every RPC. */
export const RPC_PROTOCOL = '/icn/rpc/1.0.0'
/** How long a request waits for its reply unless told otherwise. */
export const DEFAULT_RPC_TIMEOUT_MS = 10_000
/** The longest a handler may run, whatever the caller said it would wait. */
export const MAX_RPC_TIMEOUT_MS = 120_000
/** Largest frame on an RPC stream at all (a protocol's own limit is checked after the length prefix). */
export const MAX_RPC_FRAME_BYTES = 16 * 1024 * 1024
/** Deepest nesting of a frame (the envelope is two levels, so a message may nest 32 deep). */
export const MAX_RPC_DEPTH = 34
/** Streams per peer (each carries any number of requests, one at a time). */
const MAX_STREAMS_PER_PEER = 8
/** RPC protocol names: short, printable, no spaces (they are metrics labels and log fields). */
const PROTOCOL_NAME = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/
/** Error codes a remote may send: the IcnError code style. */
const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/
const MAX_ERROR_MESSAGE = 1_000

/** Who sent a request: a federation node, by DID and libp2p peer id. */
export interface RpcPeer {
  did: string
  peerId: string
}

export interface RpcHandlerOptions {
  /** Aborted when the caller's timeout passes or the node stops. */
  signal: AbortSignal
  /** The caller's request id (or the wire id), for logs on both sides. */
  requestId: string
}

export type RpcHandler = (message: unknown, from: RpcPeer, options: RpcHandlerOptions) => Promise<unknown>

export interface RpcHandleOptions {
  /** Largest request of this protocol (bytes of the whole frame); default the federation's maxMessageBytes. */
  maxMessageBytes?: number
  /** Largest reply of this protocol; default the same as maxMessageBytes. */
  maxReplyBytes?: number
}

export interface RpcRequestOptions {
  signal?: AbortSignal
  /** Default DEFAULT_RPC_TIMEOUT_MS; at most MAX_RPC_TIMEOUT_MS. */
  timeoutMs?: number
  /** Largest request and reply accepted; default the federation's maxMessageBytes. */
  maxMessageBytes?: number
  /** Carried to the handler and into both sides' logs (a correlation id); default the wire id. */
  requestId?: string
}

interface Registered {
  handler: RpcHandler
  maxMessageBytes: number
  maxReplyBytes: number
}

export interface RpcComponents {
  libp2p: IcnLibp2p
  logger: Logger
  metrics: Metrics
  /** This node's DID: a request to it is answered by its own handlers, through the same encoding. */
  did: string
  /** Is this DID a node of the federation? Only those are dialed. */
  isNode: (did: string) => boolean
  /** A peer broke the protocol: counted against it (peer health). */
  onMisbehaviour: (peer: string, reason: string) => void
  /** The federation's maxMessageBytes: the default limit of a protocol. */
  maxMessageBytes: number
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
}

function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function onlyKeys(v: Record<string, unknown>, allowed: string[]): boolean {
  return Object.keys(v).every((k) => allowed.includes(k))
}

/** Decode a frame with the depth and integer limits checked first (no recursion on hostile input). */
function decodeFrame(data: Uint8Array): unknown {
  try {
    checkCborLimits(data, MAX_RPC_DEPTH, 'RPC frame')
    return dagCbor.decode(data)
  } catch (err) {
    throw new RpcMalformedError(`RPC frame is not DAG-CBOR within the limits: ${(err as Error).message}`, {
      cause: err,
    })
  }
}

/** The handler registry of a network: kept apart from the libp2p host, so handlers can be added before start. */
export class RpcHandlers {
  private readonly handlers = new Map<string, Registered>()

  constructor(private readonly defaultMaxMessageBytes: () => number) {}

  /** Register `handler` for `protocol`; returns the function that removes it. Throws RpcHandlerError. */
  add(protocol: string, handler: RpcHandler, options: RpcHandleOptions = {}): () => void {
    checkProtocolName(protocol)
    if (this.handlers.has(protocol))
      throw new RpcHandlerError(protocol, `a handler for ${protocol} is already registered`)
    for (const k of ['maxMessageBytes', 'maxReplyBytes'] as const) {
      const v = options[k]
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 64 || v > MAX_RPC_FRAME_BYTES))
        throw new RpcHandlerError(protocol, `${k} must be an integer from 64 to ${MAX_RPC_FRAME_BYTES}`)
    }
    const max = options.maxMessageBytes ?? this.defaultMaxMessageBytes()
    const entry: Registered = { handler, maxMessageBytes: max, maxReplyBytes: options.maxReplyBytes ?? max }
    this.handlers.set(protocol, entry)
    return () => {
      if (this.handlers.get(protocol) === entry) this.handlers.delete(protocol)
    }
  }

  get(protocol: string): Registered | undefined {
    return this.handlers.get(protocol)
  }

  /** The largest request frame any handler takes. */
  maxRequestBytes(): number {
    let max = this.defaultMaxMessageBytes()
    for (const h of this.handlers.values()) max = Math.max(max, h.maxMessageBytes)
    return Math.min(max, MAX_RPC_FRAME_BYTES)
  }
}

function checkProtocolName(protocol: unknown): asserts protocol is string {
  if (typeof protocol !== 'string' || !PROTOCOL_NAME.test(protocol))
    throw new RpcHandlerError(
      String(protocol).slice(0, 130),
      `RPC protocol names are 1 to 128 of A-Z a-z 0-9 . _ / - (starting with a letter or digit), got ${JSON.stringify(String(protocol).slice(0, 130))}`,
    )
}

/** An error as it goes on the wire: code, message and (if it can be encoded) details. */
function wireError(err: unknown): { code: string; message: string; details?: Record<string, unknown> } {
  if (err instanceof IcnError && ERROR_CODE.test(err.code)) {
    const e = { code: err.code, message: err.message.slice(0, MAX_ERROR_MESSAGE) }
    if (err.details === undefined) return e
    try {
      dagCbor.encode(err.details)
      return { ...e, details: err.details as Record<string, unknown> }
    } catch {
      return e // details that DAG-CBOR cannot hold (undefined, functions) are left out, not the error
    }
  }
  return { code: 'RPC_REMOTE_ERROR', message: 'the remote handler failed' }
}

/** The RPC of one started network: client pool, inbound streams, and the handler registry. */
export class Rpc {
  private readonly pool: StreamPool
  private readonly controller = new AbortController()
  private seq = 0
  private started = false

  constructor(
    private readonly handlers: RpcHandlers,
    private readonly c: RpcComponents,
  ) {
    this.pool = new StreamPool(c.libp2p, {
      protocol: RPC_PROTOCOL,
      maxStreamsPerPeer: MAX_STREAMS_PER_PEER,
      maxReplyBytes: MAX_RPC_FRAME_BYTES,
    })
  }

  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    await this.c.libp2p.handle(RPC_PROTOCOL, (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: MAX_STREAMS_PER_PEER,
    })
  }

  async stop(): Promise<void> {
    this.controller.abort()
    this.pool.close()
    await this.c.libp2p.unhandle(RPC_PROTOCOL).catch(() => {})
  }

  forget(peer: string): void {
    this.pool.forget(peer)
  }

  /** Send `message` to the node `did` under `protocol` and return its handler's reply. Throws typed errors. */
  async request(
    did: string,
    protocol: string,
    message: unknown,
    options: RpcRequestOptions = {},
  ): Promise<unknown> {
    const { metrics } = this.c
    const end = metrics.rpcRequestSeconds.startTimer({ protocol: labelOf(protocol) })
    try {
      const reply = await this.exchange(did, protocol, message, options)
      metrics.rpcRequests.inc({ protocol: labelOf(protocol), outcome: 'ok' })
      return reply
    } catch (err) {
      metrics.rpcRequests.inc({ protocol: labelOf(protocol), outcome: outcomeOf(err) })
      throw err
    } finally {
      end()
    }
  }

  private async exchange(
    did: string,
    protocol: string,
    message: unknown,
    options: RpcRequestOptions,
  ): Promise<unknown> {
    if (options.signal?.aborted) throw new AbortedError('RPC request aborted')
    try {
      checkProtocolName(protocol)
    } catch (err) {
      throw new RpcMalformedError((err as Error).message)
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_RPC_TIMEOUT_MS
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_RPC_TIMEOUT_MS)
      throw new RpcMalformedError(`timeoutMs must be an integer from 1 to ${MAX_RPC_TIMEOUT_MS}`)
    if (typeof did !== 'string' || !this.c.isNode(did))
      throw new PeerUnreachableError(
        String(did),
        'not_a_node',
        `${String(did)} is not a node of this federation: RPC goes to federation nodes only`,
      )
    const max = options.maxMessageBytes
    if (max !== undefined && (!Number.isSafeInteger(max) || max < 64 || max > MAX_RPC_FRAME_BYTES))
      throw new RpcMalformedError(`maxMessageBytes must be an integer from 64 to ${MAX_RPC_FRAME_BYTES}`)
    const limit = max ?? this.c.maxMessageBytes
    const id = ++this.seq
    const correlation = options.requestId === undefined ? undefined : String(options.requestId).slice(0, 128)
    const requestId = correlation ?? String(id)
    const envelope: Record<string, unknown> = { v: 1, id, p: protocol, t: timeoutMs }
    if (message !== undefined) envelope.m = message
    if (correlation !== undefined) envelope.c = correlation
    let frame: Uint8Array
    try {
      frame = dagCbor.encode(envelope)
    } catch (err) {
      throw new RpcMalformedError(
        `the ${protocol} message cannot be encoded as DAG-CBOR: ${describeError(err)}`,
        {
          cause: err,
        },
      )
    }
    if (frame.length > limit) throw new MessageTooLargeError(protocol, frame.length, limit)
    const log = this.c.logger.child({ protocol, did, requestId })

    // To itself: the same handlers through the same encoding, so a caller cannot tell the difference.
    if (did === this.c.did) {
      const self = { did, peerId: this.c.libp2p.peerId.toString() }
      const reply = await withDeadline(
        this.answer(frame, self, options.signal),
        options.signal,
        timeoutMs,
        () => {
          throw new RpcTimeoutError(did, protocol, timeoutMs)
        },
      )
      return this.readReply(reply, id, protocol, did, limit, undefined)
    }

    const peer = peerIdFromDid(did)
    let data: Uint8Array
    try {
      data = await this.pool.request(peer, frame, { signal: options.signal, timeoutMs })
    } catch (err) {
      const e = err as FrameRequestError
      log.debug({ err: describeError(e.cause ?? e), failure: e.failure }, 'RPC request failed')
      switch (e.failure) {
        case 'aborted':
          throw new AbortedError('RPC request aborted')
        case 'timeout':
          throw new RpcTimeoutError(did, protocol, timeoutMs)
        case 'unsupported':
          throw new UnknownProtocolError(protocol, did)
        case 'oversized':
          this.c.onMisbehaviour(peer.toString(), 'oversized')
          throw new MessageTooLargeError(protocol, MAX_RPC_FRAME_BYTES + 1, limit, 'reply')
        case 'closed':
          throw new PeerUnreachableError(did, 'not_started', 'the network is stopping')
        case 'dial':
          throw new PeerUnreachableError(did, 'dial', `cannot reach ${did}: ${describeError(e.cause)}`, {
            cause: e,
          })
        default:
          throw new PeerUnreachableError(
            did,
            'stream',
            `the stream to ${did} broke before the reply: ${describeError(e.cause ?? e)}`,
            { cause: e },
          )
      }
    }
    const reply = this.readReply(data, id, protocol, did, limit, peer.toString())
    log.debug({ bytes: frame.length, replyBytes: data.length }, 'RPC request answered')
    return reply
  }

  /** Check and decode a reply frame; a broken one counts against `peer` (undefined: this node's own). */
  private readReply(
    data: Uint8Array,
    id: number,
    protocol: string,
    did: string,
    limit: number,
    peer: string | undefined,
  ): unknown {
    const broken = (reason: string, err: IcnError): never => {
      if (peer) this.c.onMisbehaviour(peer, reason)
      throw err
    }
    if (data.length > limit)
      broken('oversized', new MessageTooLargeError(protocol, data.length, limit, 'reply'))
    let v: unknown
    try {
      v = decodeFrame(data)
    } catch (err) {
      return broken('malformed', err as IcnError)
    }
    const bad = (m: string): never =>
      broken('malformed', new RpcMalformedError(`${protocol} reply from ${did}: ${m}`))
    if (!isMap(v) || v.v !== 1 || !onlyKeys(v, ['v', 'id', 'r', 'e']))
      return bad('expected {v: 1, id, r | e}')
    if (v.id !== id) return bad(`answers request ${String(v.id)}, not ${id}`)
    if ('r' in v && 'e' in v) return bad('has both a result and an error')
    if ('e' in v) {
      const e = v.e
      if (!isMap(e) || !onlyKeys(e, ['code', 'message', 'details']))
        return bad('error must be {code, message, details?}')
      if (typeof e.code !== 'string' || !ERROR_CODE.test(e.code)) return bad('error code must be UPPER_CASE')
      if (typeof e.message !== 'string') return bad('error message must be a string')
      if (e.details !== undefined && !isMap(e.details)) return bad('error details must be a map')
      throw new RemoteError(e.code, e.message.slice(0, MAX_ERROR_MESSAGE), { did, protocol }, e.details)
    }
    return v.r
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    let from: RpcPeer
    try {
      from = { did: didFromPeerId(connection.remotePeer), peerId: peer }
    } catch {
      stream.abort(new Error('peer id is not an Ed25519 key'))
      return
    }
    await serveFrames(stream, connection, {
      maxRequestBytes: this.handlers.maxRequestBytes(),
      logger: this.c.logger.child({ peer }),
      onBroken: () => this.c.onMisbehaviour(peer, 'oversized'),
      answer: (data) => this.answer(data, from),
    })
  }

  /** Answer one request frame with a reply frame. Never throws. */
  private async answer(data: Uint8Array, from: RpcPeer, callerSignal?: AbortSignal): Promise<Uint8Array> {
    const { metrics } = this.c
    const self = from.did === this.c.did
    const refuse = (
      id: number,
      label: string,
      outcome: string,
      err: IcnError,
      misbehaviour?: string,
    ): Uint8Array => {
      metrics.rpcHandled.inc({ protocol: label, outcome })
      if (misbehaviour && !self) this.c.onMisbehaviour(from.peerId, misbehaviour)
      this.c.logger.debug(
        { peer: from.peerId, id, protocol: label, err: describeError(err) },
        'RPC request refused',
      )
      return dagCbor.encode({ v: 1, id, e: wireError(err) })
    }
    let v: unknown
    try {
      v = decodeFrame(data)
    } catch (err) {
      return refuse(0, 'unknown', 'malformed', err as IcnError, 'malformed')
    }
    const id = isMap(v) && isId(v.id) ? v.id : 0
    if (
      !isMap(v) ||
      v.v !== 1 ||
      !isId(v.id) ||
      !onlyKeys(v, ['v', 'id', 'p', 'm', 't', 'c']) ||
      typeof v.p !== 'string' ||
      !PROTOCOL_NAME.test(v.p) ||
      (v.t !== undefined && !(isId(v.t) && v.t > 0)) ||
      (v.c !== undefined && (typeof v.c !== 'string' || v.c.length > 128))
    )
      return refuse(
        id,
        'unknown',
        'malformed',
        new RpcMalformedError('expected {v: 1, id, p, m?, t?, c?}'),
        'malformed',
      )
    const protocol = v.p
    const entry = this.handlers.get(protocol)
    if (!entry)
      return refuse(id, 'unknown', 'unknown_protocol', new UnknownProtocolError(protocol, this.c.did))
    if (data.length > entry.maxMessageBytes)
      return refuse(
        id,
        protocol,
        'too_large',
        new MessageTooLargeError(protocol, data.length, entry.maxMessageBytes),
        'oversized',
      )
    const requestId = (v.c as string | undefined) ?? String(id)
    const log = this.c.logger.child({ protocol, peer: from.peerId, did: from.did, requestId })
    const waitMs = Math.min((v.t as number | undefined) ?? DEFAULT_RPC_TIMEOUT_MS, MAX_RPC_TIMEOUT_MS)
    const deadline = AbortSignal.timeout(waitMs)
    const signals = [this.controller.signal, deadline]
    if (callerSignal) signals.push(callerSignal)
    const signal = AbortSignal.any(signals)
    const end = metrics.rpcHandleSeconds.startTimer({ protocol })
    let reply: Uint8Array
    let outcome = 'ok'
    try {
      // A handler that ignores its signal still frees the stream once the caller has stopped waiting.
      const result = await untilAborted(entry.handler(v.m, from, { signal, requestId }), signal, () =>
        deadline.aborted && !this.controller.signal.aborted
          ? new RpcTimeoutError(this.c.did, protocol, waitMs)
          : new AbortedError('RPC handler cut short: the caller stopped waiting or the node stops'),
      )
      try {
        reply = dagCbor.encode(result === undefined ? { v: 1, id } : { v: 1, id, r: result })
      } catch (err) {
        log.error({ err: describeError(err) }, 'RPC handler returned a value DAG-CBOR cannot encode')
        outcome = 'error'
        reply = dagCbor.encode({ v: 1, id, e: wireError(undefined) })
      }
      if (outcome === 'ok' && reply.length > entry.maxReplyBytes) {
        log.warn({ bytes: reply.length, limit: entry.maxReplyBytes }, 'RPC reply over the limit: not sent')
        outcome = 'too_large'
        reply = dagCbor.encode({
          v: 1,
          id,
          e: wireError(new MessageTooLargeError(protocol, reply.length, entry.maxReplyBytes, 'reply')),
        })
      }
    } catch (err) {
      outcome = err instanceof IcnError ? 'refused' : 'error'
      if (outcome === 'error') log.warn({ err: describeError(err) }, 'RPC handler failed')
      else log.debug({ code: (err as IcnError).code }, 'RPC handler refused the request')
      reply = dagCbor.encode({ v: 1, id, e: wireError(err) })
    } finally {
      end()
    }
    metrics.rpcHandled.inc({ protocol, outcome })
    log.debug({ outcome, bytes: data.length, replyBytes: reply.length }, 'RPC request handled')
    return reply
  }
}

/** `work`, unless `signal` aborts first (then the error `why` makes). */
async function untilAborted<T>(work: Promise<T>, signal: AbortSignal, why: () => Error): Promise<T> {
  if (signal.aborted) throw why()
  let stop!: () => void
  const stopped = new Promise<never>((_, reject) => {
    stop = () => reject(why())
  })
  signal.addEventListener('abort', stop, { once: true })
  try {
    return await Promise.race([work, stopped])
  } finally {
    signal.removeEventListener('abort', stop)
  }
}

/** `work`, unless `signal` aborts (ABORTED) or `timeoutMs` passes (`onTimeout` throws) first. */
async function withDeadline<T>(
  work: Promise<T>,
  signal: AbortSignal | undefined,
  timeoutMs: number,
  onTimeout: () => never,
): Promise<T> {
  const timeout = AbortSignal.timeout(timeoutMs)
  const both = signal ? AbortSignal.any([signal, timeout]) : timeout
  let stop!: () => void
  const stopped = new Promise<never>((_, reject) => {
    stop = () => {
      try {
        if (signal?.aborted) throw new AbortedError('RPC request aborted')
        onTimeout()
      } catch (err) {
        reject(err)
      }
    }
  })
  both.addEventListener('abort', stop, { once: true })
  try {
    return await Promise.race([work, stopped])
  } finally {
    both.removeEventListener('abort', stop)
  }
}

/** A protocol as a metrics label: registered names are bounded by the code; anything else is 'invalid'. */
function labelOf(protocol: unknown): string {
  return typeof protocol === 'string' && PROTOCOL_NAME.test(protocol) ? protocol : 'invalid'
}

function outcomeOf(err: unknown): string {
  switch ((err as { code?: string }).code) {
    case 'RPC_TIMEOUT':
      return 'timeout'
    case 'PEER_UNREACHABLE':
      return 'unreachable'
    case 'MESSAGE_TOO_LARGE':
      return 'too_large'
    case 'RPC_MALFORMED':
      return 'malformed'
    case 'UNKNOWN_PROTOCOL':
      return 'unknown_protocol'
    case 'ABORTED':
      return 'aborted'
    default:
      return 'remote_error'
  }
}
