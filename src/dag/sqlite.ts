import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { AbstractBlockStore, rangeFromRows, STATS_SQL, type StoreComponents, statsFromRow } from './base.js'
import { type Block, collectLinks, decodeSignedBlock, type ValidatedBlock } from './block.js'
import { type CID, cidFromBytes, DAG_CBOR } from './cid.js'
import {
  BlockNotFoundError,
  checkAborted,
  StoreClosedError,
  StoreLockedError,
  StoreOpenError,
} from './errors.js'
import { Mutex } from './mutex.js'
import { type BatchPlan, chainsOf, headPositions, lookupsFor, planBatch, positionKey } from './plan.js'
import type { SqlAccess } from './sql-access.js'
import { SqliteAccess } from './sqlite-access.js'
import { SQLITE_MIGRATIONS } from './sqlite-schema.js'
import type { AbortOptions, ChainHead, Evidence, GcOptions, StoreStats } from './store.js'

export interface SqliteStoreOptions {
  /** Database file; created with its folder if missing. */
  path: string
  /** `NORMAL` (default) survives a process crash; `FULL` also survives power loss, at a write-speed cost. */
  synchronous?: 'NORMAL' | 'FULL'
}

type Stmt = Database.Statement<unknown[], unknown>
type Row = Record<string, unknown>

/**
 * SQLite backend (better-sqlite3, WAL). The embedded default: one file in the data folder, opened in
 * exclusive locking mode so a second process on the same folder fails at start (StoreLockedError,
 * `STORE_LOCKED`) instead of corrupting it.
 */
export class SqliteBlockStore extends AbstractBlockStore {
  readonly backend = 'sqlite' as const
  private db?: Database.Database
  private stmts?: Record<string, Stmt>
  /**
   * Held by every write (commit, delete, pin, unpin, gc) and by every use of `sql()`: a projection's open
   * transaction and the store's own writes never interleave on the one connection.
   */
  private readonly writes = new Mutex()
  private access?: SqliteAccess

  constructor(
    private readonly options: SqliteStoreOptions,
    components: StoreComponents = {},
  ) {
    super(components)
  }

  async open(options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    if (this.db) return
    let db: Database.Database | undefined
    try {
      mkdirSync(dirname(this.options.path), { recursive: true })
      db = new Database(this.options.path, { timeout: 1000 })
      db.pragma('journal_mode = WAL')
      db.pragma(`synchronous = ${this.options.synchronous ?? 'NORMAL'}`)
      db.pragma('locking_mode = EXCLUSIVE')
      db.pragma('foreign_keys = ON')
      // Checkpoint every 16 MiB of WAL rather than 4 MiB: a quarter of the checkpoint fsyncs during bulk ingest.
      db.pragma('wal_autocheckpoint = 4096')
      db.pragma('cache_size = -65536')
      migrate(db, this.now)
      db.exec('CREATE TEMP TABLE gc_roots (cid BLOB PRIMARY KEY) WITHOUT ROWID')
    } catch (err) {
      db?.close()
      const msg = (err as Error).message
      if ((err as { code?: string }).code === 'SQLITE_BUSY' || /database is locked/i.test(msg))
        throw new StoreLockedError(
          `SQLite store ${this.options.path} is in use by another process (another icn node on this data folder?); stop it first`,
          { cause: err, details: { path: this.options.path } },
        )
      throw new StoreOpenError(`cannot open SQLite store ${this.options.path}: ${msg}`, { cause: err })
    }
    this.db = db
    this.stmts = prepare(db)
    this.metrics?.storeUp.set({ backend: 'sqlite' }, 1)
    this.logger?.info({ path: this.options.path }, 'sqlite store open')
  }

  /** The SQL door onto this store's connection (see SqliteAccess); usable while the store is open. */
  sql(): SqlAccess {
    this.access ??= new SqliteAccess(() => {
      if (!this.db) throw new StoreClosedError()
      return this.db
    }, this.writes)
    return this.access
  }

  async close(): Promise<void> {
    if (!this.db) return
    // Not in the middle of a transaction of `sql()` or a commit.
    const release = await this.writes.lock()
    release()
    if (!this.db) return
    this.access?.reset()
    this.db.close()
    this.db = undefined
    this.stmts = undefined
    this.metrics?.storeUp.set({ backend: 'sqlite' }, 0)
  }

  private s(): Record<string, Stmt> {
    if (!this.stmts) throw new StoreClosedError()
    return this.stmts
  }

  protected async commit(blocks: ValidatedBlock[], options: AbortOptions = {}): Promise<BatchPlan> {
    const release = await this.writes.lock()
    try {
      return this.commitLocked(blocks, options)
    } finally {
      release()
    }
  }

  private commitLocked(blocks: ValidatedBlock[], options: AbortOptions): BatchPlan {
    const s = this.s()
    checkAborted(options.signal)
    const run = this.db!.transaction((): BatchPlan => {
      const heads = new Map<string, { seq: number; cid: CID }>()
      for (const chain of chainsOf(blocks)) {
        const row = s.head!.get(chain) as Row | undefined
        if (row)
          heads.set(chain, { seq: row.head_seq as number, cid: cidFromBytes(row.head_cid as Uint8Array) })
      }
      const { positions, raw } = lookupsFor(blocks, heads)
      const known = headPositions(heads)
      for (const p of positions) {
        const row = s.entry!.get(p.chain, p.seq) as Row | undefined
        if (row) known.set(positionKey(p.chain, p.seq), cidFromBytes(row.cid as Uint8Array))
      }
      const anchored = new Set<string>()
      for (const cid of raw) if (s.anchored!.get(cid.bytes)) anchored.add(cid.toString())
      const plan = planBatch({ blocks, positions: known, anchored })
      const now = this.now()
      // Chain entries (new, or duplicates stored again) record their position; evidence and chunks do not.
      const evidence = new Set(plan.evidence.map((e) => e.second))
      for (const b of plan.inserts) {
        const e = b.kind === 'signed' && !evidence.has(b.cid) ? b.block : undefined
        const info = s.insertBlock!.run(
          b.cid.bytes,
          b.cid.code,
          b.bytes.length,
          b.bytes,
          now,
          e?.chain,
          e?.seq,
        )
        if (info.changes === 0 && b.kind === 'raw') markDuplicate(plan, blocks, b)
      }
      for (const e of plan.entries) s.insertEntry!.run(e.chain, e.seq, e.cid.bytes)
      // The prev link is kept implicitly (blocks.chain/seq → chain_entries), which spares a row per block.
      for (const l of plan.links) if (!l.prev) s.insertLink!.run(l.parent.bytes, l.child.bytes)
      for (const ev of plan.evidence)
        s.insertEvidence!.run(ev.chain, ev.seq, ev.first.bytes, ev.second.bytes, now)
      for (const h of plan.heads) s.upsertHead!.run(h.chain, h.author, h.seq, h.cid.bytes)
      return plan
    })
    return run.immediate()
  }

  async get(cid: CID, options: AbortOptions = {}): Promise<Uint8Array> {
    checkAborted(options.signal)
    const row = this.s().get!.get(cid.bytes) as Row | undefined
    if (!row) throw new BlockNotFoundError(cid.toString())
    return row.data as Uint8Array
  }

  async has(cid: CID, options: AbortOptions = {}): Promise<boolean> {
    checkAborted(options.signal)
    return this.s().has!.get(cid.bytes) !== undefined
  }

  async delete(cid: CID, options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    const release = await this.writes.lock()
    try {
      this.deleteLocked(cid)
    } finally {
      release()
    }
  }

  private deleteLocked(cid: CID): void {
    const s = this.s()
    this.db!.transaction(() => {
      s.deleteBlock!.run(cid.bytes)
      s.deleteLinksFrom!.run(cid.bytes)
      s.unpin!.run(cid.bytes)
    }).immediate()
  }

  async *all(options: AbortOptions = {}): AsyncGenerator<Block> {
    let after = 0
    for (;;) {
      checkAborted(options.signal)
      const rows = this.s().page!.all(after, 256) as Row[]
      if (rows.length === 0) return
      for (const row of rows)
        yield { cid: cidFromBytes(row.cid as Uint8Array), bytes: row.data as Uint8Array }
      after = rows[rows.length - 1]!.id as number
    }
  }

  async links(cid: CID, options: AbortOptions = {}): Promise<CID[]> {
    checkAborted(options.signal)
    if (cid.code !== DAG_CBOR) return []
    const row = this.s().get!.get(cid.bytes) as Row | undefined
    return row ? collectLinks(decodeSignedBlock(row.data as Uint8Array)) : []
  }

  async chainHead(chain: string, options: AbortOptions = {}): Promise<ChainHead | undefined> {
    checkAborted(options.signal)
    const row = this.s().head!.get(chain) as Row | undefined
    return row ? headFromRow(row) : undefined
  }

  async chainHeads(options: AbortOptions = {}): Promise<ChainHead[]> {
    checkAborted(options.signal)
    return (this.s().heads!.all() as Row[]).map(headFromRow)
  }

  async chainEntry(chain: string, seq: number, options: AbortOptions = {}): Promise<CID | undefined> {
    checkAborted(options.signal)
    const row = this.s().entry!.get(chain, seq) as Row | undefined
    return row ? cidFromBytes(row.cid as Uint8Array) : undefined
  }

  async chainRange(chain: string, from: number, limit: number, options: AbortOptions = {}): Promise<Block[]> {
    checkAborted(options.signal)
    return rangeFromRows(this.s().range!.all(chain, from, from + limit) as Row[], from)
  }

  async evidence(options: AbortOptions = {}): Promise<Evidence[]> {
    checkAborted(options.signal)
    return (this.s().evidence!.all() as Row[]).map((r) => ({
      chain: r.chain as string,
      seq: r.seq as number,
      first: cidFromBytes(r.first_cid as Uint8Array),
      second: cidFromBytes(r.second_cid as Uint8Array),
      detectedAt: r.detected_at as number,
    }))
  }

  async pin(cid: CID, options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    if (!(await this.has(cid))) throw new BlockNotFoundError(cid.toString())
    await this.writes.run(() => this.s().pin!.run(cid.bytes, this.now()))
  }

  async unpin(cid: CID, options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    await this.writes.run(() => this.s().unpin!.run(cid.bytes))
  }

  async pins(options: AbortOptions = {}): Promise<CID[]> {
    checkAborted(options.signal)
    return (this.s().pins!.all() as Row[]).map((r) => cidFromBytes(r.cid as Uint8Array))
  }

  async gc(options: GcOptions = {}): Promise<{ removed: number }> {
    checkAborted(options.signal)
    const release = await this.writes.lock()
    try {
      return this.gcLocked(options)
    } finally {
      release()
    }
  }

  private gcLocked(options: GcOptions): { removed: number } {
    const s = this.s()
    const db = this.db!
    const end = this.metrics?.storeOpDuration.startTimer({ backend: 'sqlite', op: 'gc' })
    const removed = db
      .transaction((): number => {
        db.exec('DELETE FROM gc_roots')
        for (const r of options.roots ?? []) s.addRoot!.run(r.bytes)
        const info = s.gc!.run()
        s.gcLinks!.run()
        db.exec('DELETE FROM gc_roots')
        return info.changes
      })
      .immediate()
    end?.()
    this.metrics?.gcRemoved.inc(removed)
    this.logger?.info({ removed }, 'garbage collection done')
    return { removed }
  }

  async stats(options: AbortOptions = {}): Promise<StoreStats> {
    checkAborted(options.signal)
    return statsFromRow(this.s().stats!.get() as Row)
  }

  async ping(options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    this.s().ping!.get()
  }
}

/** A raw block that was already stored is reported as a duplicate. */
export function markDuplicate(plan: BatchPlan, blocks: ValidatedBlock[], b: ValidatedBlock): void {
  const idx = blocks.indexOf(b)
  if (idx >= 0 && plan.results[idx]?.status === 'stored')
    plan.results[idx] = { cid: b.cid, status: 'duplicate' }
}

function headFromRow(r: Row): ChainHead {
  return {
    chain: r.chain as string,
    author: r.author as string,
    seq: r.head_seq as number,
    cid: cidFromBytes(r.head_cid as Uint8Array),
  }
}

function migrate(db: Database.Database, now: () => number): void {
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
  )
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as Row[]).map((r) => r.version),
  )
  const latest = Math.max(...SQLITE_MIGRATIONS.map((m) => m.version))
  const newest = Math.max(0, ...[...applied].map(Number))
  if (newest > latest)
    throw new Error(`database schema version ${newest} is newer than this icn (${latest}); upgrade icn`)
  for (const m of SQLITE_MIGRATIONS) {
    if (applied.has(m.version)) continue
    db.transaction(() => {
      db.exec(m.sql)
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        now(),
      )
    }).immediate()
  }
}

function prepare(db: Database.Database): Record<string, Stmt> {
  const p = (sql: string): Stmt => db.prepare(sql)
  return {
    entry: p('SELECT cid FROM chain_entries WHERE chain = ? AND seq = ?'),
    range: p(
      `SELECT e.seq, e.cid, b.data FROM chain_entries e LEFT JOIN blocks b ON b.cid = e.cid
       WHERE e.chain = ? AND e.seq >= ? AND e.seq < ? ORDER BY e.seq`,
    ),
    anchored: p('SELECT 1 FROM links l JOIN blocks b ON b.cid = l.parent WHERE l.child = ? LIMIT 1'),
    insertBlock: p(
      'INSERT OR IGNORE INTO blocks (cid, codec, size, data, stored_at, chain, seq) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    insertEntry: p('INSERT INTO chain_entries (chain, seq, cid) VALUES (?, ?, ?)'),
    insertLink: p('INSERT OR IGNORE INTO links (parent, child) VALUES (?, ?)'),
    insertEvidence: p(
      'INSERT OR IGNORE INTO evidence (chain, seq, first_cid, second_cid, detected_at) VALUES (?, ?, ?, ?, ?)',
    ),
    upsertHead: p(`INSERT INTO chains (chain, author, head_seq, head_cid) VALUES (?, ?, ?, ?)
      ON CONFLICT (chain) DO UPDATE SET head_seq = excluded.head_seq, head_cid = excluded.head_cid
      WHERE excluded.head_seq > chains.head_seq`),
    get: p('SELECT data FROM blocks WHERE cid = ?'),
    has: p('SELECT 1 FROM blocks WHERE cid = ?'),
    deleteBlock: p('DELETE FROM blocks WHERE cid = ?'),
    deleteLinksFrom: p('DELETE FROM links WHERE parent = ?'),
    page: p('SELECT id, cid, data FROM blocks WHERE id > ? ORDER BY id LIMIT ?'),
    head: p('SELECT chain, author, head_seq, head_cid FROM chains WHERE chain = ?'),
    heads: p('SELECT chain, author, head_seq, head_cid FROM chains ORDER BY chain'),
    evidence: p(
      'SELECT chain, seq, first_cid, second_cid, detected_at FROM evidence ORDER BY detected_at, chain, seq',
    ),
    pin: p('INSERT OR IGNORE INTO pins (cid, pinned_at) VALUES (?, ?)'),
    unpin: p('DELETE FROM pins WHERE cid = ?'),
    pins: p('SELECT cid FROM pins ORDER BY pinned_at'),
    // Every chain head is a root: GC never takes a chain the store holds, the node's own or a replicated one.
    gc: p(`WITH RECURSIVE live(cid) AS (
        SELECT head_cid FROM chains
        UNION SELECT cid FROM pins
        UNION SELECT first_cid FROM evidence
        UNION SELECT second_cid FROM evidence
        UNION SELECT cid FROM gc_roots
        UNION SELECT l.child FROM links l JOIN live ON l.parent = live.cid
        UNION SELECT e.cid FROM blocks b JOIN live ON b.cid = live.cid
          JOIN chain_entries e ON e.chain = b.chain AND e.seq = b.seq - 1
      )
      DELETE FROM blocks WHERE cid NOT IN (SELECT cid FROM live)`),
    stats: p(STATS_SQL),
    ping: p('SELECT 1'),
    addRoot: p('INSERT OR IGNORE INTO gc_roots (cid) VALUES (?)'),
    gcLinks: p('DELETE FROM links WHERE parent NOT IN (SELECT cid FROM blocks)'),
  }
}
