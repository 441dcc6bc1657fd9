import { randomBytes } from 'node:crypto'
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net'
import pg from 'pg'

/** The PostgreSQL server tests use; each test database is created on it and dropped afterwards. */
export const TEST_PG_URL = process.env.ICN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export interface TestDatabase {
  url: string
  name: string
  drop(): Promise<void>
}

/** `url` with its database (and optionally host and port) replaced. */
export function rewritePgUrl(
  url: string,
  change: { database?: string; host?: string; port?: number },
): string {
  const u = new URL(url)
  if (change.database !== undefined) u.pathname = `/${change.database}`
  if (change.host !== undefined) u.hostname = change.host
  if (change.port !== undefined) u.port = String(change.port)
  return u.toString()
}

/**
 * A fresh, uniquely named database (`icn_t_<hex>`) on the test server, so test files running in parallel never
 * share state. `drop()` removes it, closing any connection still open to it. Commits in it do not wait for the
 * WAL flush (`synchronous_commit = off`): a throwaway database needs no crash durability, and tests run faster.
 * With `icuLocale` (e.g. `en-US`) its collation is that language's (ICU), as on a server whose default locale
 * is that language's; otherwise the test server's default.
 */
export async function createTestDatabase(opts: { icuLocale?: string } = {}): Promise<TestDatabase> {
  const name = `icn_t_${randomBytes(6).toString('hex')}`
  await sql(
    TEST_PG_URL,
    opts.icuLocale
      ? `CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${opts.icuLocale}' LOCALE 'C.UTF-8'`
      : `CREATE DATABASE ${name}`,
  )
  await sql(TEST_PG_URL, `ALTER DATABASE ${name} SET synchronous_commit = off`)
  return {
    url: rewritePgUrl(TEST_PG_URL, { database: name }),
    name,
    drop: async () => {
      await sql(TEST_PG_URL, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    },
  }
}

const EMPTY_ALL = `DO $$ DECLARE t text; BEGIN
    FOR t IN SELECT quote_ident(tablename) FROM pg_tables
      WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'
    LOOP EXECUTE 'DELETE FROM ' || t; END LOOP;
  END $$`

/**
 * Empty every table of the database except `schema_migrations`: a fresh store, cheaply (DELETE, unlike
 * TRUNCATE, needs no new files and no fsync per table). Give a connected client to save a connection setup.
 */
export async function truncateAll(target: string | pg.ClientBase): Promise<void> {
  if (typeof target === 'string') await sql(target, EMPTY_ALL)
  else await target.query(EMPTY_ALL)
}

/** Run one statement on its own connection. */
export async function sql(url: string, text: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    return await client.query(text, values)
  } finally {
    await client.end()
  }
}

interface ProxiedPair {
  client: Socket
  upstream?: Socket
  /** Bytes were dropped on it while the proxy was silent: the stream is out of step; closed at `restore()`. */
  lost: boolean
}

/**
 * A TCP proxy on 127.0.0.1 in front of the PostgreSQL server, to cut the database off (`stop()` closes the
 * listener and destroys every open connection) and bring it back (`start(samePort)`), or to make it go silent:
 * `blackhole()` keeps every connection open (and accepts new ones) but drops every byte either way, as a
 * network that stops delivering does; `restore()` forwards again, closing the connections that lost bytes.
 * `dropped` counts the chunks dropped, so a test can wait until something was tried and lost. `delay(ms)` makes
 * every byte (and the end of a connection) arrive that much later, in order, as a distant server would.
 */
export class TcpProxy {
  private server?: Server
  private readonly pairs = new Set<ProxiedPair>()
  private silent = false
  private delayMs = 0
  port = 0
  dropped = 0

  constructor(private readonly target: { host: string; port: number }) {}

  static forUrl(url: string): TcpProxy {
    const u = new URL(url)
    return new TcpProxy({ host: u.hostname || '127.0.0.1', port: Number(u.port || 5432) })
  }

  async start(port = this.port): Promise<number> {
    const server = createServer((client) => {
      const pair: ProxiedPair = { client, lost: false }
      this.pairs.add(pair)
      const later = (fn: () => void): void => {
        if (this.delayMs > 0) setTimeout(fn, this.delayMs)
        else fn()
      }
      // With a delay, a side's close reaches the other side as late as its last bytes do (after them).
      const close = (): void =>
        later(() => {
          client.destroy()
          pair.upstream?.destroy()
          this.pairs.delete(pair)
        })
      client.on('error', close)
      client.on('close', close)
      if (this.silent) {
        // Accepted, and never answered: the bytes go nowhere.
        pair.lost = true
        client.on('data', () => this.dropped++)
        return
      }
      const upstream = netConnect(this.target.port, this.target.host)
      pair.upstream = upstream
      upstream.on('error', close)
      upstream.on('close', close)
      const forward = (to: Socket) => (chunk: Buffer) => {
        if (this.silent) {
          pair.lost = true
          this.dropped++
          return
        }
        later(() => to.write(chunk))
      }
      client.on('data', forward(upstream))
      upstream.on('data', forward(client))
      client.on('end', () => {
        if (this.silent) pair.lost = true
        else later(() => upstream.end())
      })
      upstream.on('end', () => {
        if (this.silent) pair.lost = true
        else later(() => client.end())
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    this.server = server
    const addr = server.address()
    this.port = typeof addr === 'object' && addr ? addr.port : port
    return this.port
  }

  /** Forward every byte, and a connection's end and close, either way `ms` later (0: at once); set it while no
   * bytes are on their way, or they may overtake each other. */
  delay(ms: number): void {
    this.delayMs = ms
  }

  /** Go silent: connections stay open, new ones are accepted, and no byte gets through either way. */
  blackhole(): void {
    this.silent = true
  }

  /** Forward again. Connections that lost bytes while silent are out of step, so they are closed. */
  restore(): void {
    this.silent = false
    for (const pair of this.pairs) {
      if (!pair.lost) continue
      pair.client.destroy()
      pair.upstream?.destroy()
      this.pairs.delete(pair)
    }
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    this.silent = false
    this.delayMs = 0
    for (const pair of this.pairs) {
      pair.client.destroy()
      pair.upstream?.destroy()
    }
    this.pairs.clear()
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
