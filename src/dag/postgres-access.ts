/**
 * The PostgreSQL store's SQL door (`PostgresBlockStore.sql()`): statements on pooled clients, BIGINT and integral
 * NUMERIC (e.g. `sum()` of BIGINT) converted to numbers, driver failures other than an unreachable database
 * raised as SqlError. The store supplies the deadline, the identity-lock check and the error translation.
 */
import type pg from 'pg'
import { IcnError } from '../identity/index.js'
import { SqlError } from './errors.js'
import { isConnectionError } from './postgres-sql.js'
import type { SqlQueries, SqlRow } from './sql-access.js'

const INT8 = 20
const NUMERIC = 1700

function toInteger(text: string): number | string {
  if (!/^-?\d+$/.test(text)) return text
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : text
}

/** Type parsers for SqlAccess queries: BIGINT and integral NUMERIC as numbers, the rest as `pg` parses it. */
export function sqlTypes(base: typeof pg.types): pg.CustomTypesConfig {
  return {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
      if ((oid === INT8 || oid === NUMERIC) && format !== 'binary') return toInteger
      return base.getTypeParser(oid, format as 'text')
    }) as pg.CustomTypesConfig['getTypeParser'],
  }
}

function failure(err: unknown, sql: string): unknown {
  if (err instanceof IcnError || isConnectionError(err)) return err
  const e = err as { code?: string; message?: string }
  return new SqlError(`SQL failed: ${e?.message ?? String(err)} (in: ${sql.slice(0, 200)})`, {
    cause: err,
    details: { driverCode: e?.code },
  })
}

/** Names of the prepared statements by SQL text (the same text, the same name on every client); '' for none. */
const statementNames = new Map<string, string>()
/** Statement texts are few (the code's, with IN lists padded to a few sizes); past this many, stop naming. */
const MAX_NAMED = 2_000

/**
 * The statement's name: the server parses and plans a named statement once per connection (node-postgres keeps
 * which it prepared), where an unnamed one is parsed and planned at every call. Multi-row inserts of a few hundred
 * placeholders took a large part of their time in that. `SELECT *` stays unnamed: its prepared form would fail
 * ("cached plan must not change result type") once a migration changed the table's columns.
 */
function statementName(sql: string): string | undefined {
  let name = statementNames.get(sql)
  if (name === undefined && statementNames.size < MAX_NAMED) {
    name = /\bSELECT\s+\*/i.test(sql) ? '' : `icn_q${statementNames.size}`
    statementNames.set(sql, name)
  }
  return name || undefined
}

/** Queries on one client; `open()` says whether the client may still be used (deadline, transaction over). */
export function clientQueries(
  client: pg.ClientBase,
  types: pg.CustomTypesConfig,
  open: () => boolean = () => true,
): SqlQueries {
  const closed = (): SqlError => new SqlError('transaction is over')
  return {
    dialect: 'postgres',
    async query(sql: string, params: readonly unknown[] = []): Promise<SqlRow[]> {
      if (!open()) throw closed()
      try {
        const res = await client.query({ name: statementName(sql), text: sql, values: [...params], types })
        return res.rows as SqlRow[]
      } catch (err) {
        throw failure(err, sql)
      }
    },
    async exec(sql: string): Promise<void> {
      if (!open()) throw closed()
      try {
        await client.query(sql)
      } catch (err) {
        throw failure(err, sql)
      }
    },
  }
}
