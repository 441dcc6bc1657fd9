import { IcnError } from '../identity/index.js'
import { redactUrl } from '../node/options.js'

// `pg` is loaded only when `icn init --store postgres` runs.

/** The database named in --pg-url does not exist on its server (a usage error: create it first). */
export class DatabaseNotFoundError extends IcnError {
  override readonly name = 'DatabaseNotFoundError'
  constructor(url: string) {
    const u = new URL(url)
    const db = decodeURIComponent(u.pathname.slice(1)) || decodeURIComponent(u.username) || 'postgres'
    const where = `${u.hostname || 'localhost'}:${u.port || '5432'}`
    const user = u.username ? ` -U ${decodeURIComponent(u.username)}` : ''
    super(
      'DATABASE_NOT_FOUND',
      `PostgreSQL at ${where} has no database "${db}": create it first, e.g. ` +
        `\`createdb -h ${u.hostname || 'localhost'} -p ${u.port || '5432'}${user} ${db}\` ` +
        `(or \`CREATE DATABASE ${db}\` in psql); the node creates its tables itself`,
      { details: { url: redactUrl(url), database: db } },
    )
  }
}

/** PostgreSQL could not be reached or refused the connection (not running, wrong host, password or rights). */
export class DatabaseUnreachableError extends IcnError {
  override readonly name = 'DatabaseUnreachableError'
  constructor(url: string, why: string) {
    super('DATABASE_UNREACHABLE', `cannot connect to PostgreSQL at ${redactUrl(url)}: ${why}`, {
      details: { url: redactUrl(url) },
    })
  }
}

/**
 * Connect once to the database of `url` and disconnect: throws DatabaseNotFoundError if the server answers
 * that it does not exist, DatabaseUnreachableError for any other failure (within `timeoutMs`).
 */
export async function checkDatabase(url: string, timeoutMs = 5_000): Promise<void> {
  const { default: pg } = await import('pg')
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs })
  client.on('error', () => {})
  try {
    await client.connect()
  } catch (err) {
    const e = err as { code?: string; message?: string }
    // 3D000 invalid_catalog_name: no such database.
    if (e.code === '3D000') throw new DatabaseNotFoundError(url)
    throw new DatabaseUnreachableError(url, e.code ?? e.message ?? String(err))
  } finally {
    await client.end().catch(() => {})
  }
}
