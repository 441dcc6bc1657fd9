import { randomBytes } from 'node:crypto'
import pg from 'pg'

/** The PostgreSQL server tests use; each test database is created on it and dropped afterwards. */
export const TEST_PG_URL = process.env.ICN_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** `url` with its database replaced by `db`. */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url)
  u.pathname = `/${db}`
  return u.toString()
}

/**
 * A fresh, uniquely named database (`icn_t_<hex>`) on the test server, so test files running in parallel never
 * share state. `drop()` removes it, closing any connection still open to it.
 */
export async function createTestDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `icn_t_${randomBytes(6).toString('hex')}`
  await admin(`CREATE DATABASE ${name}`)
  return {
    url: withDatabase(TEST_PG_URL, name),
    name,
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  }
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_PG_URL, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    await client.query(sql)
  } finally {
    await client.end()
  }
}
