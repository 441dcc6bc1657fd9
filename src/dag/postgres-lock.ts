/**
 * The PostgreSQL store's identity lock: a session-level advisory lock keyed by the node's DID, on a connection
 * of its own, that makes the store this process's alone. `postgres.ts` takes it at open, checks it before every
 * write and hands its `LockCheck` to the write transaction (`postgres-sql.ts`), which refuses if the lock
 * connection's backend no longer holds it.
 */
import pg from 'pg'
import type { Logger } from '../observability/index.js'
import { StoreLockedError } from './errors.js'
import { destroyClient, errorText, type LockCheck } from './postgres-sql.js'

export interface IdentityLockOptions {
  /** Connection URL of the store's database. */
  url: string
  /** Who holds the store (the node's DID); the lock's key is `icn:node:<owner>`. */
  owner: string
  /** `host:port/database`, for messages and logs. */
  where: string
  /** Give up on the lock connection after this long. */
  connectTimeoutMs: number
  /** Deadline of each round trip on the lock connection, and of ending it. */
  timeoutMs: number
  /** Removes secrets (the URL, the password) from error texts before they are logged. */
  redact: (text: string) => string
  logger?: Logger
}

/**
 * The lock and the connection it lives on. Held from `take()` until `release()`; if the connection fails or
 * ends (its 'error'/'end' events), or a write transaction finds the lock gone (`lost`), it is no longer held
 * and `held` is undefined until it is taken again.
 */
export class IdentityLock {
  /** The connection holding the lock, while it is held (test/compliance/postgres.test.ts deafens it by this name). */
  private client?: pg.Client
  private check?: LockCheck
  private taking?: Promise<LockCheck>
  /** The release under way, if any. */
  private releasing?: Promise<void>

  constructor(private readonly options: IdentityLockOptions) {}

  /** How a write transaction checks that the lock is still held; undefined while it is not held. */
  get held(): LockCheck | undefined {
    return this.check
  }

  /**
   * Take the lock on a new connection (one attempt at a time). StoreLockedError if another process holds it;
   * a connection failure passes as it is.
   */
  take(): Promise<LockCheck> {
    this.taking ??= this.acquire().finally(() => {
      this.taking = undefined
    })
    return this.taking
  }

  /** A write transaction found that the lock `check` describes is no longer held: drop its connection. */
  lost(check: LockCheck, err: unknown): void {
    if (this.client && this.check === check) this.drop(this.client, err)
  }

  /**
   * Let the lock go: unlock it on its session, then end the session. Resolves once the server answered the
   * unlock (or the connection failed, or `waitMs` passed and it was destroyed), so that another process, or
   * this node started again, can take the lock at once: a session that is only ended frees its locks when the
   * server's backend exits, a moment after the client saw the connection close. `waitMs` defaults to the
   * lock's `timeoutMs`; 0 destroys the connection at once (the database is known to be silent). A release
   * while another is under way waits for that one.
   */
  release(waitMs = this.options.timeoutMs): Promise<void> {
    const client = this.client
    this.client = undefined
    this.check = undefined
    if (!client) return this.releasing ?? Promise.resolve()
    client.removeAllListeners('end')
    client.on('error', () => {})
    const done = this.unlock(client, waitMs).finally(() => {
      if (this.releasing === done) this.releasing = undefined
    })
    this.releasing = done
    return done
  }

  /** Wait for an attempt to take the lock to end, then let the lock go (see `release`). */
  async close(waitMs?: number): Promise<void> {
    await this.taking?.catch(() => {})
    await this.release(waitMs)
  }

  private async unlock(client: pg.Client, waitMs: number): Promise<void> {
    // Bounded: a silent connection is destroyed instead of waited on (the server frees the lock when it notices).
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      (async () => {
        if (waitMs <= 0) return
        await client
          .query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [`icn:node:${this.options.owner}`])
          .catch(() => {})
        await client.end().catch(() => {})
      })(),
      new Promise<void>((resolve) => {
        timer = setTimeout(
          () => {
            destroyClient(client)
            resolve()
          },
          Math.max(0, waitMs),
        )
      }),
    ])
    clearTimeout(timer)
  }

  private async acquire(): Promise<LockCheck> {
    const { url, owner, where } = this.options
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: this.options.connectTimeoutMs,
      query_timeout: this.options.timeoutMs,
      keepAlive: true,
      application_name: 'icn-lock',
    })
    const lost = (err: unknown): void => this.drop(client, err)
    client.on('error', lost)
    client.on('end', () => lost(new Error('lock connection ended')))
    try {
      await client.connect()
      const res = await client.query({
        text: `SELECT pg_try_advisory_lock(k) AS ok, pg_backend_pid() AS pid, k::text AS key
               FROM (SELECT hashtextextended($1, 0) AS k) AS x`,
        values: [`icn:node:${owner}`],
      })
      const row = res.rows[0] as { ok: boolean; pid: number; key: string }
      if (!row.ok)
        throw new StoreLockedError(
          `PostgreSQL store at ${where} is in use by another icn node with this identity (${owner}); stop it first, or give this node a database of its own`,
          { details: { db: where, owner } },
        )
      const k = BigInt.asUintN(64, BigInt(row.key))
      const check: LockCheck = { pid: row.pid, classid: Number(k >> 32n), objid: Number(k & 0xffffffffn) }
      this.client = client
      this.check = check
      return check
    } catch (err) {
      client.off('error', lost)
      client.on('error', () => {})
      destroyClient(client)
      throw err
    }
  }

  /** The lock connection failed or ended: the lock is gone with it; writes stop until it is taken again. */
  private drop(client: pg.Client, err: unknown): void {
    if (this.client !== client) return
    this.client = undefined
    this.check = undefined
    this.options.logger?.warn(
      { db: this.options.where, err: this.options.redact(errorText(err)) },
      'lost the PostgreSQL store lock; writes stop until it is taken again',
    )
    client.on('error', () => {})
    destroyClient(client)
  }
}
