import type { Signer } from '../identity/index.js'
import type { Logger } from '../observability/index.js'
import { isUnavailableError } from './base.js'
import { type Block, chainId, createSignedBlock } from './block.js'
import type { CID } from './cid.js'
import { ChainConflictError, checkAborted } from './errors.js'
import type { AbortOptions, BlockSource, BlockStore, PutResult } from './store.js'
import { encodeValue, VALUE_RECORD_TYPE } from './value.js'

export interface AppendOptions extends AbortOptions {
  source?: BlockSource
  /** Log through this logger (e.g. a request's, bound to its id) instead of the writer's own. */
  log?: Logger
  /** The block's time (ms); default the writer's clock. The ledger passes the time its rules were checked at. */
  ts?: number
}

export interface ChainWriterOptions {
  /** Chain name under the signer's DID, e.g. `node`. */
  name: string
}

export interface ChainWriterComponents {
  store: BlockStore
  signer: Signer
  logger?: Logger
  clock?: { now(): number }
}

export interface AppendResult {
  cid: CID
  seq: number
  chunks: number
}

/**
 * The single writer of one chain: appends signed records one at a time (a queue, so concurrent callers get
 * consecutive sequence numbers), each linked to the previous head. The head advances only after the store
 * acknowledged the block, so a failed write leaves the chain as it was. After any failed write the head is
 * read from the store again before the next one: a COMMIT whose reply was lost may have happened.
 * Appends queued behind one that found the store unavailable fail with it at once (nothing signed), so
 * each caller waits at most about one store deadline, not one per append ahead of it.
 *
 * The writer follows blocks of its chain that reach the store by other ways (anti-entropy, gossip, a CAR
 * import): a node restored into a new data folder gets its own earlier blocks back from its peers after it
 * started, and its next append must extend them rather than sign a second block for a position they hold.
 */
export class ChainWriter {
  readonly chain: string
  private head?: { seq: number; cid: CID }
  private loaded = false
  private queue: Promise<unknown> = Promise.resolve()
  /** Appends that failed on an unavailable store, and the last such error. */
  private outages = 0
  private lastOutage?: unknown

  constructor(
    opts: ChainWriterOptions,
    private readonly components: ChainWriterComponents,
  ) {
    this.chain = chainId(components.signer.did, opts.name)
    components.store.onCommit((e) => {
      for (const b of e.blocks) {
        if (b.status !== 'stored' || b.chain !== this.chain || b.seq === undefined) continue
        // The store keeps a chain gap-free, so a stored position beyond the head makes it the new head.
        if (this.loaded && (!this.head || b.seq > this.head.seq)) this.head = { seq: b.seq, cid: b.cid }
      }
    })
  }

  /** Append a record of `type` with `body`, plus any chunk blocks it links, in one atomic put. */
  append(
    type: string,
    body: unknown,
    extra: Block[] = [],
    options: AppendOptions = {},
  ): Promise<AppendResult> {
    const outages = this.outages
    const run = this.queue.then(() => {
      if (this.outages !== outages) throw this.lastOutage
      return this.appendNow(type, body, extra, options)
    })
    this.queue = run.catch(() => undefined)
    return run
  }

  /** Store any JSON-like value as an `icn.value/v1` record, chunked if large. */
  async appendValue(value: unknown, options: AppendOptions = {}): Promise<AppendResult> {
    const { body, chunks } = encodeValue(value)
    return this.append(VALUE_RECORD_TYPE, body, chunks, options)
  }

  /** The current head, read from the store on first use. */
  async currentHead(options: AbortOptions = {}): Promise<{ seq: number; cid: CID } | undefined> {
    if (!this.loaded) {
      const head = await this.components.store.chainHead(this.chain, options)
      this.head = head ? { seq: head.seq, cid: head.cid } : undefined
      this.loaded = true
    }
    return this.head
  }

  private async appendNow(
    type: string,
    body: unknown,
    extra: Block[],
    options: AppendOptions,
  ): Promise<AppendResult> {
    checkAborted(options.signal)
    const head = await this.currentHead(options).catch((err: unknown) => this.failed(err))
    const seq = head ? head.seq + 1 : 0
    const block = createSignedBlock(this.components.signer, {
      type,
      chain: this.chain,
      seq,
      prev: head?.cid ?? null,
      ts: options.ts ?? this.components.clock?.now() ?? Date.now(),
      body,
    })
    let result: PutResult | undefined
    try {
      ;[result] = await this.components.store.putMany([block, ...extra], options)
    } catch (err) {
      // The write may have happened even so (a commit whose reply was lost): read the head again before the
      // next append rather than sign a second block for this position.
      this.loaded = false
      this.failed(err)
    }
    if (result?.status === 'equivocation') {
      // Another writer holds this key and wrote this position: reload and refuse rather than fork further.
      this.loaded = false
      throw new ChainConflictError(this.chain, seq)
    }
    this.head = { seq, cid: block.cid }
    ;(options.log ?? this.components.logger)?.debug(
      { cid: block.cid.toString(), seq, chain: this.chain },
      'block appended',
    )
    return { cid: block.cid, seq, chunks: extra.length }
  }

  /** Rethrow, remembering an unavailable store for the appends queued meanwhile. */
  private failed(err: unknown): never {
    if (isUnavailableError(err)) {
      this.outages++
      this.lastOutage = err
    }
    throw err
  }
}
