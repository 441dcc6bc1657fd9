import type { SqlAccess, SqlQueries } from '../dag/sql-access.js'
import type { Clock } from '../network/index.js'
import type { Logger } from '../observability/index.js'
import { ProjectionConfigError, StateSchemaTooNewError } from './errors.js'
import type { Migration, Projection, StateModule, TableSpec } from './projection.js'

/**
 * The schema of the derived state: the runner's own tables, each module's migrations (applied in order and once,
 * recorded in `state_migrations`) and the projection versions (`state_projections`). ProjectionRunner applies
 * them at start and uses the clearing and seeding below for a version change and for reindex.
 */

/** The runner's own tables, tracked under this module name in `state_migrations`. */
export const RUNNER_MODULE = 'state'

const RUNNER_MIGRATIONS: Migration[] = [
  {
    version: 1,
    description: 'projection versions, cursors and rejections',
    sqlite: `CREATE TABLE state_projections (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
      CREATE TABLE state_cursors (projection TEXT NOT NULL, chain TEXT NOT NULL, seq BIGINT NOT NULL,
        cid TEXT NOT NULL, PRIMARY KEY (projection, chain));
      CREATE TABLE state_rejections (projection TEXT NOT NULL, chain TEXT NOT NULL, seq BIGINT NOT NULL,
        cid TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (projection, chain, seq))`,
    postgres: `CREATE TABLE state_projections (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
      CREATE TABLE state_cursors (projection TEXT NOT NULL, chain TEXT NOT NULL, seq BIGINT NOT NULL,
        cid TEXT NOT NULL, PRIMARY KEY (projection, chain));
      CREATE TABLE state_rejections (projection TEXT NOT NULL, chain TEXT NOT NULL, seq BIGINT NOT NULL,
        cid TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (projection, chain, seq))`,
  },
]

/** Runner tables that are part of the derived state (same blocks, same rows): dumped and compared too. */
export const RUNNER_TABLES: TableSpec[] = [
  { name: 'state_cursors', orderBy: ['projection', 'chain'] },
  { name: 'state_rejections', orderBy: ['projection', 'chain', 'seq'] },
]

/** `name` if it is a plain SQL identifier (lower case, digits, underscores), else ProjectionConfigError. */
export function ident(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name))
    throw new ProjectionConfigError(`invalid SQL identifier ${JSON.stringify(name)}`)
  return name
}

/** A transaction holding the runner's lock on `key` (on PostgreSQL an advisory lock: runners may share it). */
export type LockedTx = <T>(key: string, fn: (tx: SqlQueries) => Promise<T>) => Promise<T>

export interface SchemaContext {
  sql: SqlAccess
  lockedTx: LockedTx
  clock: Clock
  logger?: Logger
}

/** Apply the runner's migrations, then each module's, that the database lacks (STATE_SCHEMA_TOO_NEW if ahead). */
export async function migrateModules(c: SchemaContext, modules: Iterable<StateModule>): Promise<void> {
  await c.lockedTx('migrations', async (tx) => {
    await tx.exec(
      'CREATE TABLE IF NOT EXISTS state_migrations (module TEXT NOT NULL, version INTEGER NOT NULL, applied_at BIGINT NOT NULL, PRIMARY KEY (module, version))',
    )
  })
  await migrate(c, RUNNER_MODULE, RUNNER_MIGRATIONS)
  for (const m of modules) await migrate(c, m.name, m.migrations)
}

async function migrate(c: SchemaContext, module: string, migrations: Migration[]): Promise<void> {
  const dialect = c.sql.dialect
  const appliedIn = async (q: SqlQueries): Promise<Set<number>> =>
    new Set(
      (await q.query('SELECT version FROM state_migrations WHERE module = $1', [module])).map((r) =>
        Number(r.version),
      ),
    )
  const applied = await appliedIn(c.sql)
  const newest = Math.max(0, ...applied)
  if (newest > migrations.length) throw new StateSchemaTooNewError(module, newest, migrations.length)
  for (const m of migrations) {
    if (applied.has(m.version)) continue
    const done = await c.lockedTx('migrations', async (tx) => {
      // Another process sharing the database may have applied it meanwhile.
      if ((await appliedIn(tx)).has(m.version)) return false
      await tx.exec(dialect === 'sqlite' ? m.sqlite : m.postgres)
      await tx.query('INSERT INTO state_migrations (module, version, applied_at) VALUES ($1, $2, $3)', [
        module,
        m.version,
        c.clock.now(),
      ])
      return true
    })
    if (done)
      c.logger?.info({ module, version: m.version, description: m.description }, 'state migration applied')
  }
}

/** The projection versions the database records, by projection name. */
export async function storedVersions(tx: SqlQueries): Promise<Map<string, number>> {
  const rows = await tx.query('SELECT name, version FROM state_projections')
  return new Map(rows.map((r) => [r.name as string, Number(r.version)]))
}

/** Delete every row of the module's tables (last listed first) and the cursors and rejections of `projections`. */
export async function clearModuleRows(
  tx: SqlQueries,
  m: StateModule,
  projections: readonly Projection[],
): Promise<void> {
  for (const t of [...m.tables].reverse()) await tx.query(`DELETE FROM ${ident(t.name)}`)
  for (const p of projections) {
    await tx.query('DELETE FROM state_cursors WHERE projection = $1', [p.name])
    await tx.query('DELETE FROM state_rejections WHERE projection = $1', [p.name])
  }
}

/** Seed a projection's rows (`init`) and record its version. */
export async function initProjection(tx: SqlQueries, p: Projection): Promise<void> {
  await p.init?.(tx)
  await tx.query(
    'INSERT INTO state_projections (name, version) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET version = excluded.version',
    [p.name, p.version],
  )
}
