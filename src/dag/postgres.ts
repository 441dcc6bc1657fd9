import pg from 'pg'
import { AbstractBlockStore, rangeFromRows, STATS_SQL, type StoreComponents, statsFromRow } from './base.js'
import type { Block, ValidatedBlock } from './block.js'
import { type CID, cidFromBytes } from './cid.js'
import {
  BlockNotFoundError,
  checkAborted,
  StoreClosedError,
  StoreOpenError,
  StoreUnavailableError,
} from './errors.js'
import type { BatchPlan } from './plan.js'
import {
  apply,
  describePgUrl,
  errorText,
  headFromRow,
  isConnectionError,
  migrate,
  RETRYABLE,
  type Row,
  withClient,
} from './postgres-sql.js'
import type { AbortOptions, ChainHead, Evidence, GcOptions, StoreStats } from './store.js'

export interface PostgresStoreOptions {
  /** `postgres://user[:password]@host[:port]/database`. */
  url: string
  /** Connections in the pool (default 8). */
  poolSize?: number
  /** Give up on a new connection after this long (default 10 000 ms). */
  connectTimeoutMs?: number
  /** Server-side limit on any one statement (default: none). */
  statementTimeoutMs?: number
}

const PAGE = 256
/**
 * PostgreSQL backend (`pg` pool). Same tables and meaning as the SQLite backend. A put is one transaction of
 * three round trips whatever the batch size: BEGIN with an advisory lock per chain of the batch (so writers in
 * several processes serialise per chain) and the lookups; one write statement; COMMIT. Validation happened
 * before (in the base class), so the transaction stays short. Connection failures surface as
 * StoreUnavailableError; the pool reconnects by itself when the database is back.
 */
export class PostgresBlockStore extends AbstractBlockStore {
  readonly backend = 'postgres' as const
  private pool?: pg.Pool
  private opening?: Promise<void>
  private readonly where: string
  private readonly secrets: string[]

  constructor(
    private readonly options: PostgresStoreOptions,
    components: StoreComponents = {},
  ) {
    super(components)
    this.where = describePgUrl(options.url)
    this.secrets = [options.url]
    try {
      const password = new URL(options.url).password
      if (password) this.secrets.push(password, decodeURIComponent(password))
    } catch {
      // an unparseable URL fails at open, with the URL itself redacted
    }
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
    const timeout = this.options.statementTimeoutMs
    const pool = new pg.Pool({
      connectionString: this.options.url,
      max: this.options.poolSize ?? 8,
      connectionTimeoutMillis: this.options.connectTimeoutMs ?? 10_000,
      keepAlive: true,
      application_name: 'icn',
      ...(timeout ? { statement_timeout: timeout, query_timeout: timeout + 5_000 } : {}),
    })
    // An idle client whose connection drops emits here; without a listener the process would crash.
    pool.on('error', (err) => {
      this.logger?.warn(
        { db: this.where, err: this.redact(err.message) },
        'idle PostgreSQL connection failed',
      )
    })
    try {
      await withClient(pool, (client) => migrate(client))
    } catch (err) {
      await pool.end().catch(() => {})
      throw new StoreOpenError(
        `cannot open PostgreSQL store at ${this.where}: ${this.redact(errorText(err))}`,
        { cause: err },
      )
    }
    this.pool = pool
    this.metrics?.storeUp.set({ backend: 'postgres' }, 1)
    this.logger?.info({ db: this.where }, 'postgres store open')
  }

  async close(): Promise<void> {
    await this.opening?.catch(() => {})
    const pool = this.pool
    if (!pool) return
    this.pool = undefined
    await pool.end()
    this.metrics?.storeUp.set({ backend: 'postgres' }, 0)
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

  /** Connection failures become StoreUnavailableError; everything else (bad input, bugs) passes through. */
  private translate(err: unknown, op: string): unknown {
    if (/after calling end on the pool/.test((err as Error)?.message ?? '')) return new StoreClosedError()
    if (!isConnectionError(err)) return err
    this.metrics?.storeUp.set({ backend: 'postgres' }, 0)
    if (op !== 'put') this.metrics?.storeErrors.inc({ backend: 'postgres', op })
    const slow = (err as { code?: string }).code === '57014' || /timeout/i.test((err as Error)?.message ?? '')
    return new StoreUnavailableError(
      `PostgreSQL database at ${this.where} is unreachable${slow ? ' or too slow' : ''}: ${this.redact(errorText(err))}`,
      { cause: err },
    )
  }

  private async query(op: string, sql: string | pg.QueryConfig, values?: unknown[]): Promise<Row[]> {
    const pool = this.p()
    try {
      const res = typeof sql === 'string' ? await pool.query(sql, values) : await pool.query(sql)
      return res.rows as Row[]
    } catch (err) {
      throw this.translate(err, op)
    }
  }

  protected async commit(blocks: ValidatedBlock[], options: AbortOptions = {}): Promise<BatchPlan> {
    const pool = this.p()
    for (let attempt = 1; ; attempt++) {
      checkAborted(options.signal)
      try {
        return await withClient(pool, async (client, discard) => {
          try {
            const plan = await apply(client, blocks)
            checkAborted(options.signal)
            await client.query('COMMIT')
            return plan
          } catch (err) {
            await client.query('ROLLBACK').catch(discard)
            throw err
          }
        })
      } catch (err) {
        const code = (err as { code?: string })?.code
        if (attempt < 3 && code && RETRYABLE.has(code)) continue
        throw this.translate(err, 'put')
      }
    }
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
    const rows = await this.query(
      'pin',
      `WITH p AS (
         INSERT INTO pins (cid, pinned_at) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM blocks WHERE cid = $1)
         ON CONFLICT DO NOTHING
       )
       SELECT EXISTS (SELECT 1 FROM blocks WHERE cid = $1) AS found`,
      [cid.bytes, Date.now()],
    )
    if (!rows[0]?.found) throw new BlockNotFoundError(cid.toString())
  }

  async unpin(cid: CID, options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    await this.query('unpin', 'DELETE FROM pins WHERE cid = $1', [cid.bytes])
  }

  async pins(options: AbortOptions = {}): Promise<CID[]> {
    checkAborted(options.signal)
    const rows = await this.query('pins', 'SELECT cid FROM pins ORDER BY pinned_at, cid')
    return rows.map((r) => cidFromBytes(r.cid as Uint8Array))
  }

  async gc(options: GcOptions = {}): Promise<{ removed: number }> {
    checkAborted(options.signal)
    const end = this.metrics?.storeOpDuration.startTimer({ backend: 'postgres', op: 'gc' })
    let removed: number
    try {
      // One statement, so one snapshot: the live set, the block deletion and the dangling links go together.
      const rows = await this.query(
        'gc',
        `WITH RECURSIVE live(cid) AS (
           SELECT cid FROM pins
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
      removed = Number(rows[0]?.removed ?? 0)
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

  async ping(options: AbortOptions = {}): Promise<void> {
    checkAborted(options.signal)
    await this.query('ping', 'SELECT 1')
    this.metrics?.storeUp.set({ backend: 'postgres' }, 1)
  }
}
