import { Compile } from 'typebox/compile'
import {
  AbortedError,
  type BlockStore,
  type CID,
  type CommitEvent,
  decodeSignedBlock,
  type SqlAccess,
  type SqlQueries,
  type SqlRow,
} from '../dag/index.js'
import type { Clock } from '../network/index.js'
import type { Logger, Metrics } from '../observability/index.js'
import { ProjectionConfigError, ProjectionFaultedError, RunnerStoppedError } from './errors.js'
import { type FoldBlock, FreshBlocks } from './fresh.js'
import type { FoldOutcome, Projection, StateModule, StateReader } from './projection.js'
import {
  clearModuleRows,
  ident,
  initProjection,
  migrateModules,
  RUNNER_MODULE,
  RUNNER_TABLES,
  type SchemaContext,
  storedVersions,
} from './schema.js'
import { FoldSettling, type SettleOutcome } from './settle.js'

export { RUNNER_MODULE } from './schema.js'

export interface ProjectionRunnerOptions {
  /** Blocks of one chain folded per transaction (default 64). */
  batchBlocks?: number
  /** First retry of a faulted projection after this long (default 250 ms); doubles per failure. */
  retryMinMs?: number
  /** Longest wait between retries of a faulted projection (default 30 000 ms). */
  retryMaxMs?: number
  /**
   * Re-read the chain heads this often (default 0: never) to notice blocks stored by another process that
   * shares the database (PostgreSQL, nodes with other DIDs), which this store's commit events do not tell.
   */
  refreshMs?: number
}

export interface ProjectionRunnerComponents {
  store: BlockStore
  logger?: Logger
  metrics?: Metrics
  /** Timers (deferred blocks, fault retries) and `FoldContext.now`; default the system clock. */
  clock?: Clock
  /** This node's DID: a block it authored folds with `own: true`. */
  did?: string
}

export type RunnerStatus = 'created' | 'starting' | 'running' | 'stopping' | 'stopped'

/** Rejection code of a block whose body does not fit its record type's schema. */
export const SCHEMA_MISMATCH = 'SCHEMA_MISMATCH'

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const t = setTimeout(callback, ms)
    t.unref()
    return t
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

type Validator = {
  Check(value: unknown): boolean
  Errors(value: unknown): { instancePath: string; message: string }[]
}

interface Fault {
  error: unknown
  chain: string
  seq?: number
  cid?: string
  failures: number
}

interface Registered {
  p: Projection
  validators: Map<string, Validator>
  /** Last folded seq per chain (-1: none). */
  cursors: Map<string, number>
  /** Per chain: a deferred block may fold from this clock time on. */
  deferred: Map<string, number>
  fault?: Fault
  /** A retry of the faulted projection is due. */
  retryDue: boolean
}

interface Waiter {
  chain: string
  seq: number
  resolve(): void
  reject(err: unknown): void
}

type Counts = Record<FoldOutcome['status'] | 'skipped', number>

/**
 * The projection runner: folds blocks into the derived-state tables of registered projections, one chain at a
 * time in chain order, with a durable cursor per (projection, chain) committed in the same transaction as the
 * rows. One fold loop at a time; chains are independent; a fault rolls back, stops the projection and retries
 * with bounded backoff.
 */
export class ProjectionRunner {
  private phase: RunnerStatus = 'created'
  private readonly store: BlockStore
  private readonly logger?: Logger
  private readonly metrics?: Metrics
  private readonly clock: Clock
  private readonly did?: string
  private readonly batch: number
  private readonly retryMinMs: number
  private readonly retryMaxMs: number
  private readonly refreshMs: number
  private readonly regs: Registered[] = []
  private readonly modules = new Map<string, StateModule>()
  private sqlAccess?: SqlAccess
  /** Head seq of every chain the store holds (from chainHeads at start, then commits). */
  private readonly heads = new Map<string, number>()
  private readonly dirty = new Set<string>()
  /** Blocks just committed to chains some projection folds, as the store decoded them (see fresh.ts). */
  private readonly fresh = new FreshBlocks()
  private readonly timers = new Set<unknown>()
  private readonly waiters = new Set<Waiter>()
  /** Gossiped blocks whose relay waits for their fold (`settled`). */
  private readonly settling: FoldSettling
  private unsubscribe?: () => void
  /** The fold loop in progress. */
  private looping?: Promise<void>
  /** Held by the fold loop, reindex and dump: one at a time. */
  private foldLock: Promise<void> = Promise.resolve()

  constructor(options: ProjectionRunnerOptions, components: ProjectionRunnerComponents) {
    this.store = components.store
    this.logger = components.logger
    this.metrics = components.metrics
    this.clock = components.clock ?? realClock
    this.did = components.did
    this.batch = Math.max(1, Math.floor(options.batchBlocks ?? 64))
    this.retryMinMs = options.retryMinMs ?? 250
    this.retryMaxMs = options.retryMaxMs ?? 30_000
    this.refreshMs = options.refreshMs ?? 0
    this.settling = new FoldSettling(this.clock, (chain, seq) => this.foldPending(chain, seq))
  }

  /** Add a projection; before `start()`. Names are unique; modules are shared by name (same migrations). */
  register(p: Projection): void {
    if (this.phase !== 'created')
      throw new ProjectionConfigError(`register ${p.name}: the runner already started`)
    if (this.regs.some((r) => r.p.name === p.name))
      throw new ProjectionConfigError(`projection ${p.name} is registered twice`, { projection: p.name })
    const m = p.module
    if (m.name === RUNNER_MODULE)
      throw new ProjectionConfigError(`module name ${RUNNER_MODULE} is the runner's own`)
    m.migrations.forEach((mig, i) => {
      if (mig.version !== i + 1)
        throw new ProjectionConfigError(
          `module ${m.name}: migration ${i + 1} has version ${mig.version}; number them 1, 2, 3, …`,
        )
    })
    for (const t of m.tables) {
      ident(t.name)
      for (const c of t.orderBy) ident(c)
      if (t.orderBy.length === 0)
        throw new ProjectionConfigError(`table ${t.name} of module ${m.name} has no orderBy`)
    }
    const known = this.modules.get(m.name)
    if (
      known &&
      known !== m &&
      JSON.stringify([known.migrations, known.tables]) !== JSON.stringify([m.migrations, m.tables])
    )
      throw new ProjectionConfigError(
        `module ${m.name} is registered twice with different migrations or tables`,
        {
          module: m.name,
        },
      )
    if (!Number.isSafeInteger(p.version) || p.version < 1)
      throw new ProjectionConfigError(`projection ${p.name}: version must be a positive integer`)
    // Each compiled on its first block (compiling costs milliseconds at every start, for types few blocks use).
    const validators = new Map<string, Validator>()
    for (const [type, schema] of Object.entries(p.recordTypes)) {
      let compiled: Validator | undefined
      const get = (): Validator => (compiled ??= Compile(schema) as unknown as Validator)
      validators.set(type, { Check: (v) => get().Check(v), Errors: (v) => get().Errors(v) })
    }
    if (!known) this.modules.set(m.name, m)
    this.regs.push({ p, validators, cursors: new Map(), deferred: new Map(), retryDue: false })
  }

  private get sql(): SqlAccess {
    if (!this.sqlAccess) throw new RunnerStoppedError()
    return this.sqlAccess
  }

  /** Migrate, check versions (rebuilding a module whose projection changed), catch every chain up, then follow commits. */
  async start(): Promise<void> {
    if (this.phase !== 'created') return
    this.phase = 'starting'
    try {
      // stop() may come while this waits: it wins.
      const stillStarting = (): void => {
        if (this.phase !== 'starting')
          throw new RunnerStoppedError('the projection runner was stopped while starting')
      }
      this.sqlAccess = this.store.sql()
      await migrateModules(this.schema(), this.modules.values())
      stillStarting()
      await this.checkVersions()
      stillStarting()
      await this.loadCursors()
      stillStarting()
      // Subscribe before reading the heads: a commit in between is seen twice (harmless), never missed.
      this.unsubscribe = this.store.onCommit((e) => this.onCommit(e))
      const heads = await this.store.chainHeads()
      stillStarting()
      for (const h of heads) {
        this.noteHead(h.chain, h.seq)
        this.dirty.add(h.chain)
      }
      this.phase = 'running'
      for (const r of this.regs) this.metrics?.projectionUp.set({ projection: r.p.name }, 1)
      this.logger?.info(
        { projections: this.regs.map((r) => r.p.name), chains: this.heads.size },
        'projection runner started',
      )
      this.kick()
      await this.looping
      if (this.refreshMs > 0) this.after(this.refreshMs, () => void this.refresh())
    } catch (err) {
      if (this.phase === 'starting' || this.phase === 'running') {
        this.phase = 'stopping'
        await this.halt()
      } else this.unsubscribe?.()
      throw err
    }
  }

  /** Stop following; waits for the fold in progress. Idempotent. */
  async stop(): Promise<void> {
    if (this.phase === 'stopped' || this.phase === 'stopping') return
    if (this.phase === 'created') {
      this.phase = 'stopped'
      return
    }
    this.phase = 'stopping'
    await this.halt()
  }

  private async halt(): Promise<void> {
    this.settling.clear()
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.fresh.clear()
    for (const t of this.timers) this.clock.clearTimeout(t)
    this.timers.clear()
    await this.looping?.catch(() => {})
    await this.foldLock
    for (const w of this.waiters) w.reject(new RunnerStoppedError())
    this.waiters.clear()
    for (const r of this.regs) this.metrics?.projectionUp.set({ projection: r.p.name }, 0)
    this.phase = 'stopped'
  }

  private get running(): boolean {
    return this.phase === 'running'
  }

  // ---- migrations and versions ----

  /**
   * A transaction that, on PostgreSQL, first takes a transaction-scoped advisory lock on `key`: nodes with other
   * DIDs may share one database, so their runners serialise migrations, version checks and each cursor's folds.
   * SQLite is one process's alone (its exclusive lock): nothing to take.
   */
  private lockedTx<T>(key: string, fn: (tx: SqlQueries) => Promise<T>): Promise<T> {
    return this.sql.transaction(fn, { lockKey: `icn:state:${key}` })
  }

  private schema(): SchemaContext {
    return {
      sql: this.sql,
      lockedTx: (key, fn) => this.lockedTx(key, fn),
      clock: this.clock,
      logger: this.logger,
    }
  }

  private async checkVersions(): Promise<void> {
    for (const m of this.modules.values()) {
      const regs = this.regs.filter((r) => r.p.module.name === m.name)
      await this.lockedTx('migrations', async (tx) => {
        const stored = await storedVersions(tx)
        const changed = regs.filter((r) => stored.has(r.p.name) && stored.get(r.p.name) !== r.p.version)
        const fresh = regs.filter((r) => !stored.has(r.p.name))
        if (changed.length > 0) {
          for (const r of changed)
            this.logger?.warn(
              { projection: r.p.name, module: m.name, from: stored.get(r.p.name), to: r.p.version },
              'projection version changed: clearing its module and refolding from the blocks',
            )
          await this.clearModule(tx, m, regs)
          for (const r of regs) await this.initProjection(tx, r)
        } else for (const r of fresh) await this.initProjection(tx, r)
      })
    }
  }

  /** Delete every row of the module's tables (last listed first) and the cursors and rejections of `regs`. */
  private async clearModule(tx: SqlQueries, m: StateModule, regs: Registered[]): Promise<void> {
    await clearModuleRows(
      tx,
      m,
      regs.map((r) => r.p),
    )
    for (const r of regs) {
      r.cursors.clear()
      r.deferred.clear()
    }
  }

  private initProjection(tx: SqlQueries, r: Registered): Promise<void> {
    return initProjection(tx, r.p)
  }

  private async loadCursors(): Promise<void> {
    const rows = await this.sql.query('SELECT projection, chain, seq FROM state_cursors')
    for (const r of this.regs) r.cursors.clear()
    for (const row of rows) {
      const r = this.regs.find((x) => x.p.name === row.projection)
      r?.cursors.set(row.chain as string, Number(row.seq))
    }
  }

  // ---- triggers ----

  private noteHead(chain: string, seq: number): void {
    const known = this.heads.get(chain)
    if (known === undefined || seq > known) this.heads.set(chain, seq)
  }

  /** Heads from the store: a chain some projection is behind on is folded (see `refreshMs`). */
  private async refresh(): Promise<void> {
    if (!this.running) return
    try {
      for (const h of await this.store.chainHeads()) {
        this.noteHead(h.chain, h.seq)
        if (this.regs.some((r) => r.p.chains(h.chain) && this.cursor(r, h.chain) < h.seq))
          this.dirty.add(h.chain)
      }
      this.kick()
    } catch (err) {
      this.logger?.debug({ err }, 'reading chain heads failed; trying again later')
    }
    if (this.running) this.after(this.refreshMs, () => void this.refresh())
  }

  private onCommit(e: CommitEvent): void {
    let any = false
    for (const b of e.blocks) {
      if (b.kind !== 'signed' || b.chain === undefined || b.seq === undefined) continue
      if (b.status === 'equivocation') {
        for (const r of this.regs)
          if (r.p.chains(b.chain)) {
            this.metrics?.projectionEquivocations.inc({ projection: r.p.name })
            this.logger?.warn(
              { projection: r.p.name, chain: b.chain, seq: b.seq, cid: b.cid.toString() },
              'equivocation on a folded chain: folding the block the store holds at that position',
            )
          }
        continue
      }
      this.noteHead(b.chain, b.seq)
      if (this.regs.some((r) => r.p.chains(b.chain!))) {
        if (b.block) this.fresh.keep(b.chain, b.seq, b)
        // Only gossip asks when a block is folded (to relay it after); see `settled`.
        if (e.source === 'gossip' && b.status === 'stored')
          this.settling.note(b.cid.toString(), b.chain, b.seq)
      }
      this.dirty.add(b.chain)
      any = true
    }
    if (any) this.kick()
  }

  /** Forget the fresh blocks of `chain` that every projection folding it is past. */
  private pruneFresh(chain: string): void {
    let done = Number.POSITIVE_INFINITY
    for (const r of this.regs) if (r.p.chains(chain)) done = Math.min(done, this.cursor(r, chain))
    this.fresh.forgetUpTo(chain, done)
  }

  private kick(): void {
    if (!this.running || this.looping) return
    this.looping = this.loop()
      .catch((err: unknown) => this.logger?.error({ err }, 'projection fold loop failed'))
      .finally(() => {
        this.looping = undefined
        if (this.dirty.size > 0) this.kick()
      })
  }

  /** Run `fn` holding the fold lock (the fold loop, reindex and dump never overlap). */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const prior = this.foldLock
    let release!: () => void
    this.foldLock = new Promise((resolve) => {
      release = resolve
    })
    await prior
    try {
      return await fn()
    } finally {
      release()
    }
  }

  private async loop(): Promise<void> {
    await this.exclusive(async () => {
      while (this.running && this.dirty.size > 0) {
        const chain = this.dirty.values().next().value as string
        this.dirty.delete(chain)
        for (const r of this.regs) {
          if (!this.running) break
          if (!r.p.chains(chain)) continue
          if (r.fault && !(r.retryDue && r.fault.chain === chain)) continue
          try {
            await this.foldChain(r, chain)
            if (r.fault) this.recovered(r)
          } catch (err) {
            this.faulted(r, chain, err)
          }
        }
        this.pruneFresh(chain)
      }
    })
    this.updateLag()
  }

  private recovered(r: Registered): void {
    const f = r.fault!
    r.fault = undefined
    r.retryDue = false
    this.metrics?.projectionUp.set({ projection: r.p.name }, 1)
    this.logger?.info({ projection: r.p.name, chain: f.chain, failures: f.failures }, 'projection recovered')
    // Chains skipped while it was faulted.
    for (const chain of this.heads.keys()) if (r.p.chains(chain)) this.dirty.add(chain)
  }

  private current?: { seq: number; cid: string }

  private faulted(r: Registered, chain: string, err: unknown): void {
    const failures = (r.fault?.failures ?? 0) + 1
    const at = this.current
    r.fault = { error: err, chain, seq: at?.seq, cid: at?.cid, failures }
    r.retryDue = false
    this.metrics?.projectionFaults.inc({ projection: r.p.name })
    this.metrics?.projectionUp.set({ projection: r.p.name }, 0)
    const delay = Math.min(this.retryMaxMs, this.retryMinMs * 2 ** Math.min(failures - 1, 20))
    this.logger?.error(
      { projection: r.p.name, chain, seq: at?.seq, cid: at?.cid, err, failures, retryInMs: delay },
      'projection fold failed: rolled back, projection stopped until the retry',
    )
    const error = this.faultError(r)
    for (const w of this.waiters)
      if (r.p.chains(w.chain)) {
        this.waiters.delete(w)
        w.reject(error)
      }
    this.settling.check()
    this.after(delay, () => {
      if (r.fault !== undefined) {
        r.retryDue = true
        this.dirty.add(r.fault.chain)
        this.kick()
      }
    })
  }

  private faultError(r: Registered): ProjectionFaultedError {
    const f = r.fault!
    return new ProjectionFaultedError(
      r.p.name,
      `${(f.error as Error)?.message ?? String(f.error)} (chain ${f.chain}${f.seq !== undefined ? ` seq ${f.seq}` : ''})`,
      {
        chain: f.chain,
        seq: f.seq,
        cid: f.cid,
        cause: (f.error as { code?: string })?.code,
      },
    )
  }

  private after(ms: number, fn: () => void): void {
    const handle = this.clock.setTimeout(
      () => {
        this.timers.delete(handle)
        fn()
      },
      Math.max(0, ms),
    )
    this.timers.add(handle)
  }

  // ---- folding ----

  private cursor(r: Registered, chain: string): number {
    return r.cursors.get(chain) ?? -1
  }

  /** Fold `chain` for `r` from its cursor to the head (or a deferred block), a batch per transaction. */
  private async foldChain(r: Registered, chain: string, progress?: (blocks: number) => void): Promise<void> {
    const name = r.p.name
    for (;;) {
      if (this.phase !== 'running') return
      const until = r.deferred.get(chain)
      if (until !== undefined) {
        if (this.clock.now() < until) return
        r.deferred.delete(chain)
      }
      const from = this.cursor(r, chain) + 1
      this.current = undefined
      const blocks: FoldBlock[] =
        this.fresh.range(chain, from, this.batch) ?? (await this.store.chainRange(chain, from, this.batch))
      if (blocks.length === 0) return
      const started = performance.now()
      let committed: (() => void)[] = []
      const { counts, last, deferred, moved } = await this.lockedTx(`cursor:${name}:${chain}`, (tx) => {
        committed = []
        return this.foldBatch(r, tx, chain, from, blocks, committed)
      })
      for (const fn of committed)
        try {
          fn()
        } catch (err) {
          this.logger?.warn({ err, projection: name, chain }, 'afterCommit callback failed')
        }
      if (moved !== undefined) {
        // Another runner on a shared database (or a reindex) moved this cursor: go on from where it is.
        this.logger?.debug(
          { projection: name, chain, expected: from - 1, found: moved },
          'cursor moved elsewhere',
        )
        r.cursors.set(chain, moved)
        this.resolveWaiters()
        continue
      }
      this.metrics?.projectionFold.observe({ projection: name }, (performance.now() - started) / 1000)
      for (const [outcome, n] of Object.entries(counts))
        if (n > 0) this.metrics?.projectionBlocks.inc({ projection: name, outcome }, n)
      if (last) {
        r.cursors.set(chain, last.seq)
        this.resolveWaiters()
        progress?.(last.seq - from + 1)
        this.logger?.debug(
          { projection: name, chain, from, to: last.seq, cid: last.cid, ...counts },
          'folded',
        )
      }
      if (deferred) {
        r.deferred.set(chain, deferred.untilMs)
        this.settling.check()
        this.logger?.info(
          {
            projection: name,
            chain,
            seq: deferred.seq,
            cid: deferred.cid,
            untilMs: deferred.untilMs,
            reason: deferred.reason,
          },
          'fold deferred',
        )
        // At least retryMinMs: a fold that defers to a time already past must not spin.
        this.after(Math.max(this.retryMinMs, deferred.untilMs - this.clock.now()), () => {
          this.dirty.add(chain)
          this.kick()
        })
        return
      }
      if (blocks.length < this.batch) return
    }
  }

  private async foldBatch(
    r: Registered,
    tx: SqlQueries,
    chain: string,
    from: number,
    blocks: FoldBlock[],
    committed: (() => void)[],
  ): Promise<{
    counts: Counts
    last?: { seq: number; cid: string }
    deferred?: { seq: number; cid: string; untilMs: number; reason: string }
    /** The stored cursor is not where this runner thought (`from - 1`): nothing was folded. */
    moved?: number
  }> {
    const counts: Counts = { applied: 0, rejected: 0, skipped: 0, deferred: 0 }
    const stored = await tx.query('SELECT seq FROM state_cursors WHERE projection = $1 AND chain = $2', [
      r.p.name,
      chain,
    ])
    const at = stored[0] ? Number(stored[0].seq) : -1
    if (at !== from - 1) return { counts, moved: at }
    let last: { seq: number; cid: string } | undefined
    let deferred: { seq: number; cid: string; untilMs: number; reason: string } | undefined
    const name = r.p.name
    const beforeCommit: (() => Promise<void>)[] = []
    for (const b of blocks) {
      const block = b.block ?? decodeSignedBlock(b.bytes)
      const cid = b.cid.toString()
      this.current = { seq: block.seq, cid }
      const validator = r.validators.get(block.type)
      let outcome: FoldOutcome | { status: 'skipped' }
      if (!validator) outcome = { status: 'skipped' }
      else if (!validator.Check(block.body)) {
        const first = validator.Errors(block.body)[0]
        outcome = {
          status: 'rejected',
          code: SCHEMA_MISMATCH,
          reason: `body does not fit ${block.type}${first ? `: ${first.instancePath || '/'} ${first.message}` : ''}`,
        }
      } else
        outcome = await r.p.fold({
          tx,
          cid: b.cid as CID,
          block,
          now: this.clock.now(),
          own: block.author === this.did,
          afterCommit: (fn) => committed.push(fn),
          beforeCommit: (fn) => beforeCommit.push(fn),
        })
      if (outcome.status === 'deferred') {
        counts.deferred++
        deferred = { seq: block.seq, cid, untilMs: outcome.untilMs, reason: outcome.reason }
        break
      }
      if (outcome.status === 'rejected') {
        await tx.query(
          'INSERT INTO state_rejections (projection, chain, seq, cid, code, reason) VALUES ($1, $2, $3, $4, $5, $6)',
          [name, block.chain, block.seq, cid, outcome.code, outcome.reason],
        )
        this.logger?.debug(
          { projection: name, chain: block.chain, seq: block.seq, cid, code: outcome.code },
          'block rejected by fold',
        )
      }
      counts[outcome.status]++
      last = { seq: block.seq, cid }
    }
    for (const fn of beforeCommit) await fn()
    if (last)
      await tx.query(
        `INSERT INTO state_cursors (projection, chain, seq, cid) VALUES ($1, $2, $3, $4)
         ON CONFLICT (projection, chain) DO UPDATE SET seq = excluded.seq, cid = excluded.cid`,
        [name, chain, last.seq, last.cid],
      )
    return { counts, last, deferred }
  }

  // ---- waiting, lag, status ----

  /**
   * Resolves once every registered projection that folds `chain` has its cursor at or past `seq` (the block
   * applied, rejected or skipped). Rejects with RunnerStoppedError when the runner stops, ProjectionFaultedError
   * when one of those projections is faulted, AbortedError on the signal.
   */
  waitFor(chain: string, seq: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (options.signal?.aborted) return Promise.reject(new AbortedError())
    if (this.phase !== 'running' && this.phase !== 'starting') return Promise.reject(new RunnerStoppedError())
    const faulted = this.regs.find((r) => r.fault && r.p.chains(chain))
    if (faulted) return Promise.reject(this.faultError(faulted))
    if (this.reached(chain, seq)) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(w)
        reject(new AbortedError())
      }
      const w: Waiter = {
        chain,
        seq,
        resolve: () => {
          options.signal?.removeEventListener('abort', onAbort)
          resolve()
        },
        reject: (err) => {
          options.signal?.removeEventListener('abort', onAbort)
          reject(err)
        },
      }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.add(w)
    })
  }

  private reached(chain: string, seq: number): boolean {
    return this.regs.every((r) => !r.p.chains(chain) || this.cursor(r, chain) >= seq)
  }

  private resolveWaiters(): void {
    for (const w of this.waiters)
      if (this.reached(w.chain, w.seq)) {
        this.waiters.delete(w)
        w.resolve()
      }
    this.settling.check()
  }

  /**
   * Resolves once the projections have folded the blocks `cids` that gossip just stored, or cannot for now (a
   * projection is faulted, or deferred the chain), or after `timeoutMs`; never rejects. Block gossip awaits it
   * before forwarding a message, so a node relays a block after folding it: on a busy host the fold then runs
   * before the relay's sends instead of between them (see docs/architecture.md, "Relaying after the fold").
   */
  settled(cids: readonly string[], timeoutMs: number): Promise<SettleOutcome> {
    if (!this.running) return Promise.resolve('none')
    return this.settling.wait(cids, timeoutMs)
  }

  /** Whether some projection folding `chain` is behind `seq` and will fold it (neither faulted nor deferred). */
  private foldPending(chain: string, seq: number): boolean {
    if (!this.running) return false
    return this.regs.some(
      (r) => r.p.chains(chain) && this.cursor(r, chain) < seq && !r.fault && !r.deferred.has(chain),
    )
  }

  private lagOf(r: Registered): number {
    let lag = 0
    for (const [chain, head] of this.heads)
      if (r.p.chains(chain)) lag += Math.max(0, head - this.cursor(r, chain))
    return lag
  }

  private updateLag(): void {
    for (const r of this.regs) this.metrics?.projectionLag.set({ projection: r.p.name }, this.lagOf(r))
  }

  /** Blocks stored on the chains each projection folds and not yet folded by it (fresh heads from the store). */
  async lag(): Promise<{ projection: string; blocks: number }[]> {
    for (const h of await this.store.chainHeads()) this.noteHead(h.chain, h.seq)
    this.updateLag()
    return this.regs.map((r) => ({ projection: r.p.name, blocks: this.lagOf(r) }))
  }

  /** Where the runner is in its lifecycle. */
  get lifecycle(): RunnerStatus {
    return this.phase
  }

  /** For /ready: not ready unless running with no projection faulted. */
  status(): { ready: boolean; detail: string } {
    if (this.phase !== 'running') return { ready: false, detail: `projection runner ${this.phase}` }
    const faulted = this.regs.filter((r) => r.fault)
    if (faulted.length > 0)
      return {
        ready: false,
        detail: faulted.map((r) => this.faultError(r).message).join('; '),
      }
    const lag = this.regs.reduce((n, r) => n + this.lagOf(r), 0)
    return { ready: true, detail: `${this.regs.length} projections folding; ${lag} blocks behind` }
  }

  // ---- reindex and dump ----

  /**
   * Clear every module table (and the runner's cursors and rejections), run every `init()`, and refold every
   * chain from the blocks. Runs alone (no fold in between); the node keeps serving meanwhile.
   */
  async reindex(
    options: { onProgress?(p: { blocks: number; chains: number }): void } = {},
  ): Promise<{ blocks: number; ms: number }> {
    if (!this.running) throw new RunnerStoppedError()
    const started = performance.now()
    let blocks = 0
    let chainsDone = 0
    await this.exclusive(async () => {
      await this.lockedTx('migrations', async (tx) => {
        for (const m of this.modules.values()) {
          const regs = this.regs.filter((r) => r.p.module.name === m.name)
          await this.clearModule(tx, m, regs)
          for (const r of regs) await this.initProjection(tx, r)
        }
      })
      for (const r of this.regs) {
        r.fault = undefined
        r.retryDue = false
        this.metrics?.projectionUp.set({ projection: r.p.name }, 1)
      }
      this.logger?.info({ projections: this.regs.length }, 'reindex: tables cleared, refolding every chain')
      for (const h of await this.store.chainHeads()) this.noteHead(h.chain, h.seq)
      for (const chain of [...this.heads.keys()].sort()) {
        for (const r of this.regs) {
          if (!r.p.chains(chain)) continue
          try {
            await this.foldChain(r, chain, (n) => {
              blocks += n
              options.onProgress?.({ blocks, chains: chainsDone })
            })
          } catch (err) {
            this.faulted(r, chain, err)
            throw err
          }
        }
        chainsDone++
        options.onProgress?.({ blocks, chains: chainsDone })
      }
    })
    this.updateLag()
    // Blocks committed while the reindex ran.
    this.kick()
    const ms = performance.now() - started
    this.logger?.info({ blocks, chains: chainsDone, ms: Math.round(ms) }, 'reindex done')
    return { blocks, ms }
  }

  /** Every module table and the runner's cursors and rejections, each ordered by its TableSpec.orderBy. */
  async dump(): Promise<Record<string, SqlRow[]>> {
    if (!this.sqlAccess) throw new RunnerStoppedError()
    return this.exclusive(async () => {
      const out: Record<string, SqlRow[]> = {}
      const tables = [...[...this.modules.values()].flatMap((m) => m.tables), ...RUNNER_TABLES]
      for (const t of tables)
        out[t.name] = await this.sql.query(
          `SELECT * FROM ${ident(t.name)} ORDER BY ${t.orderBy.map(ident).join(', ')}`,
        )
      return out
    })
  }

  /** Read access to the derived-state tables for a module's queries (API reads); never inside a fold. */
  reader(): StateReader {
    return { query: (sql, params) => this.sql.query(sql, params) }
  }

  /** The registered projections' names. */
  get projections(): string[] {
    return this.regs.map((r) => r.p.name)
  }
}

/** Tables whose rows differ between two dumps (by canonical JSON of each row; bytes as hex). */
export function dumpDifferences(a: Record<string, SqlRow[]>, b: Record<string, SqlRow[]>): string[] {
  const canon = (rows: SqlRow[] | undefined): string =>
    JSON.stringify(rows ?? null, (_k, v: unknown) => {
      if (v instanceof Uint8Array) return `0x${Buffer.from(v).toString('hex')}`
      if (
        v &&
        typeof v === 'object' &&
        (v as { type?: string; data?: unknown }).type === 'Buffer' &&
        Array.isArray((v as { data?: unknown }).data)
      )
        return `0x${Buffer.from((v as { data: number[] }).data).toString('hex')}`
      if (v && typeof v === 'object' && !Array.isArray(v))
        return Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)),
        )
      return v
    })
  const names = new Set([...Object.keys(a), ...Object.keys(b)])
  return [...names].sort().filter((t) => canon(a[t]) !== canon(b[t]))
}
