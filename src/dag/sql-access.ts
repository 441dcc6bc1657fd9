/**
 * Access to the store's own database for modules that keep derived state beside the blocks (the projection
 * runner in `state`). The block store owns the connection (SQLite: its one exclusive connection; PostgreSQL:
 * its pool, deadlines and identity lock); this is the narrow door it opens onto it.
 *
 * SQL is written once for both backends with PostgreSQL-style placeholders `$1, $2, …` (the SQLite side
 * rewrites them to `?1, ?2, …`). Integers come back as numbers on both backends (PostgreSQL BIGINT text is
 * converted; every stored integer is a safe integer), booleans as numbers 0/1 where SQLite stores them.
 */
export type SqlRow = Record<string, unknown>

export interface SqlQueries {
  /** The SQL the statements are in, for the few that differ (e.g. bulk inserts). */
  readonly dialect: 'sqlite' | 'postgres'
  /** Run one statement; rows for a query (empty for statements that return none). */
  query(sql: string, params?: readonly unknown[]): Promise<SqlRow[]>
  /** Run several statements separated by `;` with no parameters (migrations). */
  exec(sql: string): Promise<void>
}

export interface TransactionOptions {
  /**
   * Take this transaction-scoped lock first (PostgreSQL: `pg_advisory_xact_lock` on the key's hash, in the
   * transaction's first round trip; SQLite: nothing, its store is one process's alone).
   */
  lockKey?: string
}

export interface SqlAccess extends SqlQueries {
  /**
   * Run `fn` in one transaction: committed when it resolves, rolled back when it throws (the error is
   * rethrown). On SQLite, transactions and the store's own block commits never interleave on the shared
   * connection. Deadline-bound on PostgreSQL like every store operation (StoreUnavailableError past it).
   */
  transaction<T>(fn: (tx: SqlQueries) => Promise<T>, options?: TransactionOptions): Promise<T>
}
