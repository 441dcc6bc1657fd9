import { InlineVerifier, type SignatureCheck, type SignatureVerifier } from '../identity/index.js'
import type { Logger, Metrics } from '../observability/index.js'
import { type Block, prevalidateBlock, signatureError, type ValidatedBlock } from './block.js'
import { type CID, cidFromBytes } from './cid.js'
import { checkAborted, UnknownAuthorError } from './errors.js'
import type { BatchPlan } from './plan.js'
import type { SqlAccess } from './sql-access.js'
import type {
  AbortOptions,
  AvailabilityEvent,
  BlockStore,
  ChainHead,
  CommitEvent,
  CommittedBlock,
  Evidence,
  GcOptions,
  PutOptions,
  PutResult,
  StoreStats,
} from './store.js'

export interface StoreComponents {
  logger?: Logger
  metrics?: Metrics
  /** Where signatures are checked; default: on the calling thread. The node passes a worker pool. */
  verifier?: SignatureVerifier
  /** The time recorded with pins, evidence and chain entries (ms since the epoch); default Date.now. */
  clock?: { now(): number }
}

/** The store counts, in SQL both backends run as is. */
export const STATS_SQL = `SELECT (SELECT count(*) FROM blocks) AS blocks, (SELECT sum(size) FROM blocks) AS bytes,
  (SELECT count(*) FROM chains) AS chains, (SELECT count(*) FROM pins) AS pins,
  (SELECT count(*) FROM evidence) AS evidence`

/** StoreStats from a STATS_SQL row (drivers return counts as numbers, bigints or strings). */
export function statsFromRow(r: Record<string, unknown>): StoreStats {
  return {
    blocks: Number(r.blocks),
    bytes: Number(r.bytes ?? 0),
    chains: Number(r.chains),
    pins: Number(r.pins),
    evidence: Number(r.evidence),
  }
}

function committed(v: ValidatedBlock, status: 'stored' | 'equivocation'): CommittedBlock {
  if (v.kind === 'raw') return { cid: v.cid, bytes: v.bytes, status, kind: 'raw' }
  const { chain, seq, author, type } = v.block
  return {
    cid: v.cid,
    bytes: v.bytes,
    status,
    kind: 'signed',
    chain,
    seq,
    author,
    type,
    links: v.links,
    block: v.block,
  }
}

/** `chainRange` rows (seq, cid, data ordered by seq) as blocks, up to the first gap or missing bytes. */
export function rangeFromRows(rows: Record<string, unknown>[], from: number): Block[] {
  const out: Block[] = []
  for (const [i, r] of rows.entries()) {
    if (Number(r.seq) !== from + i || !r.data) break
    const data = r.data as Uint8Array
    out.push({
      cid: cidFromBytes(r.cid as Uint8Array),
      bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    })
  }
  return out
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Signature checks sent to the verifier at a time. */
const VERIFY_CHUNK = 64

/** Error codes that mean "bad input", as opposed to a store failure. */
const INPUT_ERRORS = new Set([
  'BLOCK_TOO_LARGE',
  'CID_MISMATCH',
  'INVALID_CID',
  'MALFORMED_BLOCK',
  'INVALID_SIGNATURE',
  'CHAIN_GAP',
  'PREV_MISMATCH',
  'UNANCHORED_CHUNK',
  'UNKNOWN_AUTHOR',
  'VALUE_TOO_DEEP',
  'UNSAFE_INTEGER',
])

export function isInputError(err: unknown): boolean {
  return INPUT_ERRORS.has((err as { code?: string })?.code ?? '')
}

/** Error codes that mean "the store cannot be used right now": nothing was (knowingly) written; retry later. */
const UNAVAILABLE_ERRORS = new Set(['STORE_UNAVAILABLE', 'STORE_LOCKED', 'STORE_CLOSED'])

export function isUnavailableError(err: unknown): boolean {
  return UNAVAILABLE_ERRORS.has((err as { code?: string })?.code ?? '')
}

/**
 * The shared half of every backend: validation before any I/O, metrics, and the bulk methods built on the
 * primitives. Backends implement `commit` (look up, plan with `planBatch`, write, in one transaction) and the
 * reads.
 */
export abstract class AbstractBlockStore implements BlockStore {
  abstract readonly backend: 'sqlite' | 'postgres'
  protected readonly logger?: Logger
  protected readonly metrics?: Metrics
  protected readonly verifier: SignatureVerifier
  /** The store's clock (StoreComponents.clock, else the system's). */
  protected readonly now: () => number

  constructor(components: StoreComponents = {}) {
    const clock = components.clock
    this.now = clock ? () => clock.now() : () => Date.now()
    this.logger = components.logger
    this.metrics = components.metrics
    this.verifier = components.verifier ?? new InlineVerifier()
  }

  abstract open(options?: AbortOptions): Promise<void>
  abstract close(): Promise<void>
  /** Within one transaction: load lookups, call planBatch, apply the plan. Returns the plan it applied. */
  protected abstract commit(blocks: ValidatedBlock[], options?: AbortOptions): Promise<BatchPlan>
  abstract get(cid: CID, options?: AbortOptions): Promise<Uint8Array>
  abstract has(cid: CID, options?: AbortOptions): Promise<boolean>
  abstract delete(cid: CID, options?: AbortOptions): Promise<void>
  abstract all(options?: AbortOptions): AsyncGenerator<Block>
  abstract links(cid: CID, options?: AbortOptions): Promise<CID[]>
  abstract chainHead(chain: string, options?: AbortOptions): Promise<ChainHead | undefined>
  abstract chainHeads(options?: AbortOptions): Promise<ChainHead[]>
  abstract chainEntry(chain: string, seq: number, options?: AbortOptions): Promise<CID | undefined>
  abstract chainRange(chain: string, from: number, limit: number, options?: AbortOptions): Promise<Block[]>
  abstract evidence(options?: AbortOptions): Promise<Evidence[]>
  abstract pin(cid: CID, options?: AbortOptions): Promise<void>
  abstract unpin(cid: CID, options?: AbortOptions): Promise<void>
  abstract pins(options?: AbortOptions): Promise<CID[]>
  abstract gc(options?: GcOptions): Promise<{ removed: number }>
  abstract stats(options?: AbortOptions): Promise<StoreStats>
  abstract ping(options?: AbortOptions): Promise<void>
  abstract sql(): SqlAccess

  private readonly commitListeners = new Set<(event: CommitEvent) => void>()
  private readonly availabilityListeners = new Set<(event: AvailabilityEvent) => void>()
  /** Commits that failed because the store was unavailable; a put queued before one of them fails with it. */
  private outages = 0
  private lastOutage?: unknown

  onAvailability(listener: (event: AvailabilityEvent) => void): () => void {
    this.availabilityListeners.add(listener)
    return () => this.availabilityListeners.delete(listener)
  }

  /** An operation got its answer from the database: tell availability listeners (the health monitor). */
  protected reachable(): void {
    for (const listener of this.availabilityListeners) listener({ up: true })
  }

  /** An operation failed because the database is unavailable (or the store's lock is lost). */
  protected unreachable(error: unknown): void {
    for (const listener of this.availabilityListeners) listener({ up: false, error })
  }

  onCommit(listener: (event: CommitEvent) => void): () => void {
    this.commitListeners.add(listener)
    return () => this.commitListeners.delete(listener)
  }

  async put(block: Block, options?: PutOptions): Promise<PutResult> {
    const [result] = await this.putMany([block], options)
    return result!
  }

  /**
   * Validate, then commit in one transaction. Calls commit in the order they were made (FIFO), whatever order
   * their signature checks finish in, so a caller may keep several batches of one chain in flight: while one
   * batch's signatures are checked on worker threads, the previous one is written.
   */
  putMany(blocks: Block[], options: PutOptions = {}): Promise<PutResult[]> {
    const prior = this.commitTail
    const run = this.validateThenCommit(blocks, options, prior)
    // The next batch waits for this one and for every earlier one, even if this one fails early.
    this.commitTail = Promise.allSettled([prior, run]).then(() => undefined)
    return run
  }

  private commitTail: Promise<void> = Promise.resolve()

  private async validateThenCommit(
    blocks: Block[],
    options: PutOptions,
    prior: Promise<void>,
  ): Promise<PutResult[]> {
    checkAborted(options.signal)
    const outages = this.outages
    const source = options.source ?? 'local'
    const validated: ValidatedBlock[] = []
    try {
      // Signature checks leave in chunks as soon as they are ready, so verifying overlaps decoding.
      const pending: Promise<boolean[]>[] = []
      const checked: ValidatedBlock[] = []
      let chunk: SignatureCheck[] = []
      let signedHere = 0
      for (const [i, b] of blocks.entries()) {
        // A block this process signed itself (its chain writers) is not verified again; everything else is.
        const p = prevalidateBlock(b.cid, b.bytes, { signedHere: true })
        const v = p.validated
        if (v.kind === 'signed') {
          if (options.allowAuthor && !options.allowAuthor(v.block.author))
            throw new UnknownAuthorError(v.cid.toString(), v.block.author)
          options.inspect?.(v.block, validated.length)
        }
        validated.push(v)
        if (p.signedHere) signedHere++
        if (p.signature) {
          chunk.push(p.signature)
          checked.push(p.validated)
          if (chunk.length === VERIFY_CHUNK) {
            pending.push(this.verifier.verifyMany(chunk))
            chunk = []
          }
        }
        // Let the event loop run every VERIFY_CHUNK blocks: a large batch (a sync page of 1,024 blocks) would
        // otherwise hold it for ~100 ms, stalling network reads, flow-control updates and verifier replies.
        if ((i + 1) % VERIFY_CHUNK === 0 && i + 1 < blocks.length) await yieldToEventLoop()
      }
      if (chunk.length > 0) pending.push(this.verifier.verifyMany(chunk))
      const ok = (await Promise.all(pending)).flat()
      const bad = ok.indexOf(false)
      if (bad >= 0) throw signatureError(checked[bad]!)
      if (checked.length > 0) this.metrics?.blockSignatures.inc({ check: 'verified' }, checked.length)
      if (signedHere > 0) this.metrics?.blockSignatures.inc({ check: 'signed_here' }, signedHere)
    } catch (err) {
      if (isInputError(err)) this.rejected(err, source)
      throw err
    }
    await prior
    checkAborted(options.signal)
    // A commit ahead of this one failed on an unavailable store while this one waited: fail now rather than
    // wait out a deadline of its own, so a put answers within one deadline however many are queued.
    if (this.outages !== outages) throw this.lastOutage
    const end = this.metrics?.storeOpDuration.startTimer({ backend: this.backend, op: 'put' })
    let plan: BatchPlan
    try {
      plan = await this.commit(validated, options)
    } catch (err) {
      if (isInputError(err)) this.rejected(err, source)
      else this.metrics?.storeErrors.inc({ backend: this.backend, op: 'put' })
      if (isUnavailableError(err)) {
        this.outages++
        this.lastOutage = err
      }
      throw err
    } finally {
      end?.()
    }
    const added: CommittedBlock[] = []
    for (const [i, r] of plan.results.entries()) {
      if (r.status === 'duplicate') {
        this.metrics?.blocksDuplicate.inc({ source })
        continue
      }
      const v = validated[i]!
      if (r.status === 'stored') this.metrics?.blocksStored.inc({ kind: v.kind, source })
      else {
        this.metrics?.equivocations.inc({ source })
        this.logger?.warn(
          { cid: r.cid.toString(), source, peer: options.peer },
          'equivocation: second block for an occupied chain position',
        )
      }
      if (this.commitListeners.size > 0) added.push(committed(v, r.status))
    }
    if (added.length > 0) this.emitCommit({ source, peer: options.peer, blocks: added })
    return plan.results
  }

  private emitCommit(event: CommitEvent): void {
    for (const listener of this.commitListeners) {
      try {
        listener(event)
      } catch (err) {
        this.logger?.error({ err }, 'commit listener failed')
      }
    }
  }

  async *getMany(cids: Iterable<CID>, options: AbortOptions = {}): AsyncGenerator<Block> {
    for (const cid of cids) {
      checkAborted(options.signal)
      yield { cid, bytes: await this.get(cid, options) }
    }
  }

  private rejected(err: unknown, source: string): void {
    const reason = (err as { code?: string })?.code ?? 'UNKNOWN'
    this.metrics?.blocksRejected.inc({ reason, source })
    this.logger?.debug({ reason, source, err: (err as Error).message }, 'block rejected')
  }
}
