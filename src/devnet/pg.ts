import { InvalidOptionError } from '../node/options.js'

// `pg` is loaded only when a devnet uses PostgreSQL.

/** PostgreSQL's limit on identifier length. */
const MAX_IDENTIFIER = 63

/** The database node `nodeName` uses: `<db of the URL>_devnet_<nodeName>` (db `icn` when the URL names none). */
export function nodeDatabaseUrl(baseUrl: string, nodeName: string): { url: string; database: string } {
  const u = new URL(baseUrl)
  const base = decodeURIComponent(u.pathname.replace(/^\//, '')) || 'icn'
  const database = `${base}_devnet_${nodeName}`
  if (Buffer.byteLength(database) > MAX_IDENTIFIER)
    throw new InvalidOptionError(
      `database name ${database} is longer than PostgreSQL's ${MAX_IDENTIFIER} bytes: use a shorter one in --pg-url`,
    )
  u.pathname = `/${encodeURIComponent(database)}`
  return { url: u.toString(), database }
}

type PgClient = import('pg').Client

/** Run `fn` on a connection to the server of `baseUrl`: its own database, or `postgres` if that does not exist. */
async function withServer<T>(baseUrl: string, fn: (client: PgClient) => Promise<T>): Promise<T> {
  const { default: pg } = await import('pg')
  const attempt = async (url: string): Promise<T> => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
    client.on('error', () => {})
    await client.connect()
    try {
      return await fn(client)
    } finally {
      await client.end().catch(() => {})
    }
  }
  try {
    return await attempt(baseUrl)
  } catch (err) {
    // 3D000 invalid_catalog_name: the URL's database does not exist; the maintenance database will do.
    if ((err as { code?: string }).code !== '3D000') throw err
    const u = new URL(baseUrl)
    u.pathname = '/postgres'
    return attempt(u.toString())
  }
}

/** Create each database unless it exists. */
export async function createDatabases(baseUrl: string, names: string[]): Promise<void> {
  await withServer(baseUrl, async (client) => {
    for (const name of names) {
      try {
        await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`)
      } catch (err) {
        if ((err as { code?: string }).code !== '42P04') throw err // duplicate_database: keep it
      }
    }
  })
}

/** Drop each database, closing any connection still open to it. */
export async function dropDatabases(baseUrl: string, names: string[]): Promise<void> {
  await withServer(baseUrl, async (client) => {
    for (const name of names)
      await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`)
  })
}
