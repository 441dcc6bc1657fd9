import pg from 'pg'
import { AbstractBlockStore, rangeFromRows, STATS_SQL, type StoreComponents, statsFromRow } from './base.js'
import type { Block, ValidatedBlock } from './block.js'
import { type CID, cidFromBytes } from './cid.js'
import {
  BlockNotFoundError,
  checkAborted,
  StoreClosedError,
  StoreLockedError,
  StoreOpenError,
  StoreUnavailableError,
} from './errors.js'
import type { BatchPlan } from './plan.js'
import { clientQueries, sqlTypes } from './postgres-access.js'
import { commitDeadlineMs, DeadlineExceeded, runWithDeadline } from './postgres-deadline.js'
import { IdentityLock } from './postgres-lock.js'
import {
  apply,
  describePgUrl,
  errorText,
  headFromRow,
  isConnectionError,
  type LockCheck,
  LockNotHeld,
  migrate,
  RETRYABLE,
  type Row,
} from './postgres-sql.js'
import type { SqlAccess, SqlQueries, SqlRow, TransactionOptions } from './sql-access.js'
import type { AbortOptions, ChainHead, Evidence, GcOptions, StoreStats } from './store.js'

export interface PostgresStoreOptions {
  /** `postgres://user[:password]@host[:port]/database`. */
  url: string
  /** Connections in the pool (default 8). */
  poolSize?: number
  /** Give up on a new connection after this long (default 10 000 ms, and never more than `timeoutMs`). */
  connectTimeoutMs?: number
  /**
   * Deadline of every store operation (default 10 000 ms): waiting for a pooled connection, connecting and
   * every round trip included; a commit gets 1 s more per 16 MiB it writes. Past it the connection is dropped
   * (an unfinished transaction is never committed; the server rolls it back) and the operation fails with
   * StoreUnavailableError. The server enforces it too (`statement_timeout`, and
   * `idle_in_transaction_session_timeout` for a transaction whose client went silent).
   */
  timeoutMs?: number
  /** Deadline of `gc`, which walks the whole store (default 600 000 ms). */
  gcTimeoutMs?: number
  /**
   * Hold the store exclusively for this key (the node passes its DID): a session-level advisory lock on a
   * connection of its own, taken at open (StoreLockedError if another process holds it) and held until close.
   */
  lockKey?: string
}

/** Default deadline of a store operation. */
export const DEFAULT_PG_TIMEOUT_MS = 10_000

const PAGE = 256
/**
 * PostgreSQL backend (`pg` pool). Same tables and meaning as the SQLite backend. A put is one transaction of
 * three round trips whatever the batch size: BEGIN with an advisory lock per chain of the batch (so writers in
 * several processes serialise per chain) and the lookups; one write statement; COMMIT. Validation happened
 * before (in the base class), so the transaction stays short. Every operation has a deadline (`timeoutMs`).
 * Connection failures and deadlines surface as StoreUnavailableError; the pool reconnects by itself when the
 * database is back.
 *
 * With `lockKey`, the store is this process's alone: a session-level advisory lock on a dedicated connection.
 * If that connection fails or ends, the store notices ('error'/'end'), stops writing (puts, pins, deletes and
 * gc fail with StoreUnavailableError) and takes the lock again on the next write or health ping; if another
 * process took it meanwhile, they fail with StoreLockedError. A lock connection that dies silently (the
 * server dropped it while the network was down) is caught as well: every write transaction checks, in its
 * first round trip, that the lock connection's backend still holds the lock, and rolls back if not.
 */
export class PostgresBlockStore extends AbstractBlockStore {
  readonly backend = 'postgres' as const
  private pool?: pg.Pool
  private opening?: Promise<void>
  private readonly where: string
  private readonly secrets: string[]
  private readonly timeoutMs: number
  /** With `lockKey`: the session-level lock that makes the store this process's alone. */
  private readonly lock?: IdentityLock

  constructor(
    private readonly options: PostgresStoreOptions,
    components: StoreComponents = {},
  ) {
    super(components)
    this.timeoutMs = options.timeoutMs ?? DEFAULT_PG_TIMEOUT_MS
    this.where = describePgUrl(options.url)
    this.secrets = [options.url]
    try {
      const password = new URL(options.url).password
      if (password) this.secrets.push(password, decodeURIComponent(password))
    } catch {
      // an unparseable URL fails at open, with the URL itself redacted
    }
    if (options.lockKey)
      this.lock = new IdentityLock({
        url: options.url,
        owner: options.lockKey,
        where: this.where,
        connectTimeoutMs: this.connectTimeoutMs(),
        timeoutMs: this.timeoutMs,
        redact: (text) => this.redact(text),
        logger: this.logger,
      })
  }

  async open(options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    if (this.pool) return
    this.opening ??= this.connect().finally(() => {
      this.opening = undefined
    })
    return this.opening
  }

  private async connect(): Promise<void> {
    const timeout = this.timeoutMs
    const pool = new pg.Pool({
      connectionString: this.options.url,
      max: this.options.poolSize ?? 8,
      connectionTimeoutMillis: this.connectTimeoutMs(),
      keepAlive: true,
      application_name: 'icn',
      statement_timeout: timeout,
      idle_in_transaction_session_timeout: timeout,
    })
    // An idle client whose connection drops emits here; without a listener the process would crash.
    pool.on('error', (err) => {
      this.logger?.warn(
        { db: this.where, err: this.redact(err.message) },
        'idle PostgreSQL connection failed',
      )
    })
    try {
      await this.lock?.take()
      await this.run('open', (client) => migrate(client, this.now()), this.timeoutMs, pool)
    } catch (err) {
      await pool.end().catch(() => {})
      await this.lock?.release()
      if (err instanceof StoreLockedError) throw err
      throw new StoreOpenError(
        `cannot open PostgreSQL store at ${this.where}: ${this.redact(errorText(err))}`,
        { cause: err },
      )
    }
    this.pool = pool
    this.metrics?.storeUp.set({ backend: 'postgres' }, 1)
    this.logger?.info({ db: this.where, locked: Boolean(this.options.lockKey) }, 'postgres store open')
  }

  private connectTimeoutMs(): number {
    return Math.min(this.options.connectTimeoutMs ?? 10_000, this.timeoutMs)
  }

  async close(): Promise<void> {
    await this.opening?.catch(() => {})
    const pool = this.pool
    if (!pool) return
    this.pool = undefined
    // Bounded: a pool whose connections hang (the database went silent) must not keep the node from stopping.
    let timer: NodeJS.Timeout | undefined
    const ended = await Promise.race([
      pool.end().then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), this.timeoutMs)
      }),
    ])
    clearTimeout(timer)
    // The lock goes last, once no write of the pool can still commit; if the pool did not end (a silent
    // database), its connection is let go at once rather than waited on for another timeout.
    await this.lock?.close(ended ? undefined : 0)
    this.metrics?.storeUp.set({ backend: 'postgres' }, 0)
  }

  /**
   * The lock, taken again if it was lost (one attempt at a time). Without `lockKey` there is none to hold.
   * Throws StoreLockedError if another process holds it, StoreUnavailableError if the database is away.
   */
  private async holdLock(op: string): Promise<LockCheck | undefined> {
    if (!this.lock) return undefined
    const held = this.lock.held
    if (held) return held
    this.p()
    try {
      const check = await this.lock.take()
      if (!this.pool) {
        await this.lock.release()
        throw new StoreClosedError()
      }
      this.logger?.info({ db: this.where }, 'PostgreSQL store lock taken again')
      return check
    } catch (err) {
      if (err instanceof StoreLockedError) {
        this.unreachable(err)
        throw err
      }
      throw this.translate(err, op)
    }
  }

  private p(): pg.Pool {
    if (!this.pool) throw new StoreClosedError()
    return this.pool
  }

  private redact(text: string): string {
    let out = text
    for (const s of this.secrets) if (s) out = out.split(s).join('***')
    return out
  }

  /** Connection failures and deadlines become StoreUnavailableError; everything else (bad input, bugs) passes. */
  private translate(err: unknown, op: string): unknown {
    if (err instanceof StoreUnavailableError) return err
    if (/after calling end on the pool/.test((err as Error)?.message ?? '')) return new StoreClosedError()
    let out: StoreUnavailableError
    if (err instanceof LockNotHeld) {
      out = new StoreUnavailableError(
        `PostgreSQL store at ${this.where}: ${err.message}; not written (it is taken again on the next write)`,
      )
    } else if (err instanceof DeadlineExceeded) {
      out = new StoreUnavailableError(
        `PostgreSQL database at ${this.where} did not answer within ${err.ms} ms (${op})${op === 'put' || op === 'gc' ? '; nothing was committed, unless the reply to COMMIT was lost' : ''}`,
        { cause: err },
      )
    } else if (isConnectionError(err)) {
      const slow =
        (err as { code?: string }).code === '57014' || /timeout/i.test((err as Error)?.message ?? '')
      out = new StoreUnavailableError(
        `PostgreSQL database at ${this.where} is unreachable${slow ? ' or too slow' : ''}: ${this.redact(errorText(err))}`,
        { cause: err },
      )
    } else return err
    this.metrics?.storeUp.set({ backend: 'postgres' }, 0)
    if (op !== 'put') this.metrics?.storeErrors.inc({ backend: 'postgres', op })
    this.unreachable(out)
    return out
  }

  /**
   * Run `fn` on a pooled client within `ms` (see runWithDeadline); a connection failure or a lost store lock
   * drops the client too. Failures reach `translate`: deadlines and connection failures become
   * StoreUnavailableError.
   */
  private async run<T>(
    op: string,
    fn: (client: pg.PoolClient, live: () => boolean) => Promise<T>,
    ms = this.timeoutMs,
    pool = this.p(),
  ): Promise<T> {
    try {
      const result = await runWithDeadline(
        pool,
        ms,
        fn,
        (err) => isConnectionError(err) || err instanceof LockNotHeld,
      )
      if (!this.lock || this.lock.held) this.reachable()
      return result
    } catch (err) {
      throw this.translate(err, op)
    }
  }

  private query(op: string, sql: string | pg.QueryConfig, values?: unknown[]): Promise<Row[]> {
    return this.run(op, async (client) => {
      const res = typeof sql === 'string' ? await client.query(sql, values) : await client.query(sql)
      return res.rows as Row[]
    })
  }

  protected async commit(blocks: ValidatedBlock[], options: AbortOptions = {}): Promise<BatchPlan> {
    this.p()
    const lock = await this.holdLock('put')
    const bytes = blocks.reduce((n, b) => n + b.bytes.length, 0)
    const ms = commitDeadlineMs(this.timeoutMs, bytes)
    return this.run(
      'put',
      async (client, live) => {
        for (let attempt = 1; ; attempt++) {
          checkAborted(options.signal)
          try {
            const plan = await apply(client, blocks, { statementTimeoutMs: ms, lock, now: this.now() })
            checkAborted(options.signal)
            if (!live()) throw new DeadlineExceeded(ms)
            await client.query('COMMIT')
            return plan
          } catch (err) {
            if (live()) await client.query('ROLLBACK').catch(() => {})
            if (err instanceof LockNotHeld && lock) this.lock?.lost(lock, err)
            const code = (err as { code?: string })?.code
            if (attempt < 3 && code && RETRYABLE.has(code) && live()) continue
            throw err
          }
        }
      },
      ms,
    )
  }

  async get(cid: CID, options: AbortOptions = {}): Promise<Uint8Array> {
    checkAborted(options.signal)
    const end = this.metrics?.storeOpDuration.startTimer({ backend: 'postgres', op: 'get' })
    try {
      const rows = await this.query('get', {
        name: 'icn_get',
        text: 'SELECT data FROM blocks WHERE cid = $1',
        values: [cid.bytes],
      })
      if (rows.length === 0) throw new BlockNotFoundError(cid.toString())
      return rows[0]!.data as Uint8Array
    } finally {
      end?.()
    }
  }

  async has(cid: CID, options: AbortOptions = {}): Promise<boolean> {
    checkAborted(options.signal)
    const rows = await this.query('has', {
      name: 'icn_has',
      text: 'SELECT 1 FROM blocks WHERE cid = $1',
      values: [cid.bytes],
    })
    return rows.length > 0
  }

  async delete(cid: CID, options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    await this.holdLock('delete')
    await this.query(
      'delete',
      `WITH b AS (DELETE FROM blocks WHERE cid = $1), l AS (DELETE FROM links WHERE parent = $1)
       DELETE FROM pins WHERE cid = $1`,
      [cid.bytes],
    )
  }

  async *all(options: AbortOptions = {}): AsyncGenerator<Block> {
    let after = 0
    for (;;) {
      checkAborted(options.signal)
      const rows = await this.query('all', {
        name: 'icn_page',
        text: 'SELECT id, cid, data FROM blocks WHERE id > $1 ORDER BY id LIMIT $2',
        values: [after, PAGE],
      })
      if (rows.length === 0) return
      for (const row of rows)
        yield { cid: cidFromBytes(row.cid as Uint8Array), bytes: row.data as Uint8Array }
      after = Number(rows[rows.length - 1]!.id)
    }
  }

  async links(cid: CID, options: AbortOptions = {}): Promise<CID[]> {
    checkAborted(options.signal)
    const rows = await this.query('links', 'SELECT child FROM links WHERE parent = $1', [cid.bytes])
    return rows.map((r) => cidFromBytes(r.child as Uint8Array))
  }

  async chainHead(chain: string, options: AbortOptions = {}): Promise<ChainHead | undefined> {
    checkAborted(options.signal)
    const rows = await this.query(
      'chainHead',
      'SELECT chain, author, head_seq, head_cid FROM chains WHERE chain = $1',
      [chain],
    )
    return rows[0] ? headFromRow(rows[0]) : undefined
  }

  async chainHeads(options: AbortOptions = {}): Promise<ChainHead[]> {
    checkAborted(options.signal)
    const rows = await this.query(
      'chainHeads',
      'SELECT chain, author, head_seq, head_cid FROM chains ORDER BY chain COLLATE "C"',
    )
    return rows.map(headFromRow)
  }

  async chainEntry(chain: string, seq: number, options: AbortOptions = {}): Promise<CID | undefined> {
    checkAborted(options.signal)
    const rows = await this.query(
      'chainEntry',
      'SELECT cid FROM chain_entries WHERE chain = $1 AND seq = $2',
      [chain, seq],
    )
    return rows[0] ? cidFromBytes(rows[0].cid as Uint8Array) : undefined
  }

  async chainRange(chain: string, from: number, limit: number, options: AbortOptions = {}): Promise<Block[]> {
    checkAborted(options.signal)
    const rows = await this.query(
      'chainRange',
      `SELECT e.seq, e.cid, b.data FROM chain_entries e LEFT JOIN blocks b ON b.cid = e.cid
       WHERE e.chain = $1 AND e.seq >= $2 AND e.seq < $3 ORDER BY e.seq`,
      [chain, from, from + limit],
    )
    return rangeFromRows(rows, from)
  }

  async evidence(options: AbortOptions = {}): Promise<Evidence[]> {
    checkAborted(options.signal)
    const rows = await this.query(
      'evidence',
      `SELECT chain, seq, first_cid, second_cid, detected_at FROM evidence
       ORDER BY detected_at, chain COLLATE "C", seq`,
    )
    return rows.map((r) => ({
      chain: r.chain as string,
      seq: Number(r.seq),
      first: cidFromBytes(r.first_cid as Uint8Array),
      second: cidFromBytes(r.second_cid as Uint8Array),
      detectedAt: Number(r.detected_at),
    }))
  }

  async pin(cid: CID, options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    await this.holdLock('pin')
    const rows = await this.query(
      'pin',
      `WITH p AS (
         INSERT INTO pins (cid, pinned_at) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM blocks WHERE cid = $1)
         ON CONFLICT DO NOTHING
       )
       SELECT EXISTS (SELECT 1 FROM blocks WHERE cid = $1) AS found`,
      [cid.bytes, this.now()],
    )
    if (!rows[0]?.found) throw new BlockNotFoundError(cid.toString())
  }

  async unpin(cid: CID, options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    await this.holdLock('unpin')
    await this.query('unpin', 'DELETE FROM pins WHERE cid = $1', [cid.bytes])
  }

  async pins(options: AbortOptions = {}): Promise<CID[]> {
    checkAborted(options.signal)
    const rows = await this.query('pins', 'SELECT cid FROM pins ORDER BY pinned_at, cid')
    return rows.map((r) => cidFromBytes(r.cid as Uint8Array))
  }

  async gc(options: GcOptions = {}): Promise<{ removed: number }> {
    checkAborted(options.signal)
    await this.holdLock('gc')
    const end = this.metrics?.storeOpDuration.startTimer({ backend: 'postgres', op: 'gc' })
    const ms = this.options.gcTimeoutMs ?? 600_000
    let removed: number
    try {
      // One statement, so one snapshot: the live set, the block deletion and the dangling links go together.
      // Every chain head is a root: GC never takes a chain the node holds, its own or a replicated one.
      removed = await this.run(
        'gc',
        async (client, live) => {
          await client.query(`BEGIN; SET LOCAL statement_timeout = ${ms}`)
          try {
            const res = await client.query(
              `WITH RECURSIVE live(cid) AS (
                 SELECT head_cid FROM chains
                 UNION SELECT cid FROM pins
                 UNION SELECT first_cid FROM evidence
                 UNION SELECT second_cid FROM evidence
                 UNION SELECT unnest($1::bytea[])
                 UNION SELECT l.child FROM links l JOIN live ON l.parent = live.cid
               ),
               gone AS (
                 DELETE FROM blocks b WHERE NOT EXISTS (SELECT 1 FROM live WHERE live.cid = b.cid) RETURNING b.cid
               ),
               dangling AS (
                 DELETE FROM links l
                 WHERE l.parent IN (SELECT cid FROM gone) OR NOT EXISTS (SELECT 1 FROM blocks b WHERE b.cid = l.parent)
               )
               SELECT count(*) AS removed FROM gone`,
              [(options.roots ?? []).map((r) => r.bytes)],
            )
            checkAborted(options.signal)
            if (!live()) throw new DeadlineExceeded(ms)
            await client.query('COMMIT')
            return Number((res.rows[0] as Row | undefined)?.removed ?? 0)
          } catch (err) {
            if (live()) await client.query('ROLLBACK').catch(() => {})
            throw err
          }
        },
        ms,
      )
    } finally {
      end?.()
    }
    this.metrics?.gcRemoved.inc(removed)
    this.logger?.info({ removed }, 'garbage collection done')
    return { removed }
  }

  async stats(options: AbortOptions = {}): Promise<StoreStats> {
    checkAborted(options.signal)
    const rows = await this.query('stats', STATS_SQL)
    return statsFromRow(rows[0]!)
  }

  private readonly sqlTypes = sqlTypes(pg.types)

  /**
   * The SQL door onto this store's database: statements on pooled clients under the store's deadline. A
   * transaction is BEGIN … COMMIT on one client, checks in its first round trip that this process still holds
   * the identity lock (as the store's own writes do), and is dropped (never committed) past the deadline.
   * Statements outside `transaction()` are for reads.
   */
  sql(): SqlAccess {
    const types = this.sqlTypes
    const outside = (op: string, fn: (q: SqlQueries) => Promise<SqlRow[] | undefined>) =>
      this.run(op, (client) => fn(clientQueries(client, types)))
    return {
      dialect: 'postgres',
      query: async (sql, params) => (await outside('sql', (q) => q.query(sql, params))) ?? [],
      exec: async (sql) => {
        await outside('sql', async (q) => {
          await q.exec(sql)
          return undefined
        })
      },
      transaction: async <T>(
        fn: (tx: SqlQueries) => Promise<T>,
        options: TransactionOptions = {},
      ): Promise<T> => {
        this.p()
        const lock = await this.holdLock('sql')
        return this.run('sql', async (client, live) => {
          let open = true
          const tx = clientQueries(client, types, () => open && live())
          try {
            // One round trip: begin, check the identity lock, take the transaction's own lock.
            const first = ['BEGIN']
            if (lock)
              first.push(`SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                AND objsubid = 1 AND pid = ${Math.floor(lock.pid)} AND classid = ${Math.floor(lock.classid)}
                AND objid = ${Math.floor(lock.objid)}) AS held`)
            if (options.lockKey !== undefined)
              first.push(
                `SELECT pg_advisory_xact_lock(hashtextextended(${client.escapeLiteral(options.lockKey)}, 0))`,
              )
            const results = (await client.query(first.join(';\n'))) as unknown as
              | pg.QueryResult[]
              | pg.QueryResult
            if (lock) {
              const held = (Array.isArray(results) ? results[1] : undefined)?.rows[0] as Row | undefined
              if (held?.held !== true) throw new LockNotHeld()
            }
            const result = await fn(tx)
            open = false
            if (!live()) throw new DeadlineExceeded(this.timeoutMs)
            await client.query('COMMIT')
            return result
          } catch (err) {
            open = false
            if (live()) await client.query('ROLLBACK').catch(() => {})
            if (err instanceof LockNotHeld && lock) this.lock?.lost(lock, err)
            throw err
          }
        })
      },
    }
  }

  /** A round trip on the pool; with `lockKey`, also (re)takes the lock, so the health monitor notices its loss. */
  async ping(options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    await this.holdLock('ping')
    await this.query('ping', 'SELECT 1')
    this.metrics?.storeUp.set({ backend: 'postgres' }, 1)
  }
}
