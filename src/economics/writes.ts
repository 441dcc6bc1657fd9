import type { SqlQueries } from '../dag/sql-access.js'
import type { AccountState, Entry, HoldState } from './rules.js'
import { INSERT_CHUNKS, memo, placeholders } from './sql-text.js'
import { ACCOUNT_COLUMNS, nonceKey } from './tables.js'

/**
 * What the ledger writes into its tables: the fold's rows of a page of blocks (saveFolded, in a few statements),
 * and the single-row writes the projection's init and the tests use. The reads are in tables.ts.
 */

/** One account's row as it stands (the genesis accounts, at init). */
export async function insertAccount(q: SqlQueries, a: AccountState): Promise<void> {
  await q.query(`INSERT INTO ledger_accounts (${ACCOUNT_COLUMNS}) VALUES (${placeholders(12)})`, [
    a.did,
    a.kind,
    a.home,
    a.mana,
    a.manaTs,
    a.pool,
    a.held,
    a.allocated,
    a.regenerated,
    a.received,
    a.sent,
    a.burned,
  ])
}

export type EntryWhere = { chain: string; seq: number; idx: number; ts: number; op: string }

const ENTRY_COLUMNS =
  'chain, seq, idx, account, ts, op, allocated, regenerated, received, sent, burned, pool, held, mana, mana_ts'

/** An entry's values in ENTRY_COLUMNS order. */
function entryRow(w: EntryWhere, e: Entry): unknown[] {
  return [
    w.chain,
    w.seq,
    w.idx,
    e.account,
    w.ts,
    w.op,
    e.allocated,
    e.regenerated,
    e.received,
    e.sent,
    e.burned,
    e.pool,
    e.held,
    e.mana ?? null,
    e.manaTs ?? null,
  ]
}

export async function insertEntry(q: SqlQueries, where: EntryWhere, e: Entry): Promise<void> {
  await q.query(
    `INSERT INTO ledger_entries (${ENTRY_COLUMNS}) VALUES (${placeholders(15)})`,
    entryRow(where, e),
  )
}

/** Rows (values in `columns` order) to insert into `table`, then `tail` (e.g. an ON CONFLICT clause). */
interface RowWrite {
  table: string
  columns: string
  rows: unknown[][]
  tail?: string
}

/** A string as a PostgreSQL literal (as node-postgres's escapeLiteral: quotes doubled, E'' if backslashes). */
function pgLiteral(text: string): string {
  const quoted = text.replace(/'/g, "''")
  return text.includes('\\') ? ` E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`
}

/**
 * Write several tables' rows. PostgreSQL: all of them in one round trip (a fold's writes are most of its
 * statements, and each statement is a round trip): one INSERT per table whatever its row count, the rows a JSON
 * literal typed by the table's own row type (`json_populate_recordset`), the INSERTs sent as one multi-statement
 * query. SQLite (in process, no round trips): multi-row INSERTs with placeholders, in chunks of INSERT_CHUNKS
 * sizes (15 columns × 256 rows stays below its limit on placeholders).
 */
async function writeRows(q: SqlQueries, writes: RowWrite[]): Promise<void> {
  const nonEmpty = writes.filter((w) => w.rows.length > 0)
  if (nonEmpty.length === 0) return
  if (q.dialect === 'postgres') {
    const statements = nonEmpty.map(({ table, columns, rows, tail = '' }) => {
      const names = columns.split(',').map((c) => c.trim())
      const json = JSON.stringify(rows.map((r) => Object.fromEntries(names.map((n, i) => [n, r[i]]))))
      const list = names.join(', ')
      // WHERE true: without it, the ON of a tail's ON CONFLICT could be read as a join condition.
      return `INSERT INTO ${table} (${list}) SELECT ${list} FROM json_populate_recordset(NULL::${table}, ${pgLiteral(json)}::json) WHERE true${tail}`
    })
    await q.exec(statements.join(';\n'))
    return
  }
  for (const { table, columns, rows, tail = '' } of nonEmpty) {
    const width = columns.split(',').length
    let i = 0
    while (i < rows.length) {
      const size = INSERT_CHUNKS.find((c) => c <= rows.length - i)!
      const part = rows.slice(i, i + size)
      i += size
      const text = memo(`insert ${size} ${table} ${columns}${tail}`, () => {
        const values = part.map((_, r) => `(${placeholders(width, r * width)})`).join(', ')
        return `INSERT INTO ${table} (${columns}) VALUES ${values}${tail}`
      })
      await q.query(text, part.flat())
    }
  }
}

/** One op of a folded block and its outcome: a `ledger_ops` row. */
export interface OpRow {
  chain: string
  seq: number
  idx: number
  op: string
  member: string | null
  outcome: 'applied' | 'rejected'
  code: string | null
  reason: string | null
}

/** What one ledger block's fold writes, collected op by op and written at the end in a few statements. */
export interface FoldedRows {
  entries: { where: EntryWhere; entry: Entry }[]
  nonces: { member: string; nonce: string; expires: number }[]
  holds: HoldState[]
  ops: OpRow[]
}

/**
 * Write the folded rows of one or more blocks: the same result as, for each entry in order, adding its deltas to
 * its account's row (and setting the manabar if it moved it) and inserting it, then the nonces, holds and ops,
 * and each chain's last folded position (`chains`), but in one statement per table instead of several per op
 * (on PostgreSQL, all in one round trip). Credits from different chains are additions, so they commute whatever
 * order chains fold in. The accounts' deltas are summed per account and applied in one multi-row upsert (every
 * account exists: the rules refuse ops naming an unknown one), the manabar taken from the account's last entry
 * that moved it; a hold changed twice is written as it ended.
 */
export async function saveFolded(
  q: SqlQueries,
  rows: FoldedRows,
  chains: ReadonlyMap<string, { seq: number; ts: number }> = new Map(),
): Promise<void> {
  const sums = new Map<string, Entry>()
  for (const { entry: e } of rows.entries) {
    const s = sums.get(e.account)
    if (!s) {
      sums.set(e.account, { ...e })
      continue
    }
    s.allocated += e.allocated
    s.regenerated += e.regenerated
    s.received += e.received
    s.sent += e.sent
    s.burned += e.burned
    s.pool += e.pool
    s.held += e.held
    if (e.mana !== undefined) {
      s.mana = e.mana
      s.manaTs = e.manaTs
    }
  }
  const holds = new Map(rows.holds.map((h) => [h.id, h]))
  await writeRows(q, [
    {
      table: 'ledger_accounts',
      columns: ACCOUNT_COLUMNS,
      rows: [...sums.values()].map((e) => [
        e.account,
        '',
        '',
        // NOT NULL columns are checked before the conflict: -1 (no time is negative) says "manabar unchanged".
        e.mana ?? 0,
        e.manaTs ?? -1,
        e.pool,
        e.held,
        e.allocated,
        e.regenerated,
        e.received,
        e.sent,
        e.burned,
      ]),
      tail: ` ON CONFLICT (did) DO UPDATE SET allocated = ledger_accounts.allocated + excluded.allocated,
       regenerated = ledger_accounts.regenerated + excluded.regenerated,
       received = ledger_accounts.received + excluded.received, sent = ledger_accounts.sent + excluded.sent,
       burned = ledger_accounts.burned + excluded.burned, pool = ledger_accounts.pool + excluded.pool,
       held = ledger_accounts.held + excluded.held,
       mana = CASE WHEN excluded.mana_ts < 0 THEN ledger_accounts.mana ELSE excluded.mana END,
       mana_ts = CASE WHEN excluded.mana_ts < 0 THEN ledger_accounts.mana_ts ELSE excluded.mana_ts END`,
    },
    {
      table: 'ledger_entries',
      columns: ENTRY_COLUMNS,
      rows: rows.entries.map(({ where, entry }) => entryRow(where, entry)),
    },
    {
      table: 'ledger_nonces',
      columns: 'key, member, expires',
      rows: rows.nonces.map((n) => [nonceKey(n.member, n.nonce), n.member, n.expires]),
    },
    {
      table: 'ledger_holds',
      columns: HOLD_COLUMNS,
      rows: [...holds.values()].map(holdRow),
      tail: HOLD_UPSERT,
    },
    {
      table: 'ledger_ops',
      columns: 'chain, seq, idx, op, member, outcome, code, reason',
      rows: rows.ops.map((o) => [o.chain, o.seq, o.idx, o.op, o.member, o.outcome, o.code, o.reason]),
    },
    {
      table: 'ledger_chains',
      columns: 'chain, seq, ts',
      rows: [...chains].map(([chain, c]) => [chain, c.seq, c.ts]),
      tail: CHAIN_UPSERT,
    },
  ])
}

const HOLD_COLUMNS = 'id, account, chain, amount, purpose, status, paid, payee'
const HOLD_UPSERT =
  ' ON CONFLICT (id) DO UPDATE SET status = excluded.status, paid = excluded.paid, payee = excluded.payee'
const CHAIN_UPSERT = ' ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, ts = excluded.ts'

function holdRow(h: HoldState): unknown[] {
  return [h.id, h.account, h.chain, h.amount, h.purpose, h.status, h.paid, h.payee]
}

export async function saveHold(q: SqlQueries, h: HoldState): Promise<void> {
  await q.query(
    `INSERT INTO ledger_holds (${HOLD_COLUMNS}) VALUES (${placeholders(8)})${HOLD_UPSERT}`,
    holdRow(h),
  )
}

export async function insertNonce(
  q: SqlQueries,
  n: { member: string; nonce: string; expires: number },
): Promise<void> {
  await q.query('INSERT INTO ledger_nonces (key, member, expires) VALUES ($1, $2, $3)', [
    nonceKey(n.member, n.nonce),
    n.member,
    n.expires,
  ])
}

export async function insertOp(q: SqlQueries, o: OpRow): Promise<void> {
  await q.query(
    `INSERT INTO ledger_ops (chain, seq, idx, op, member, outcome, code, reason)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [o.chain, o.seq, o.idx, o.op, o.member, o.outcome, o.code, o.reason],
  )
}

export async function saveChainState(q: SqlQueries, chain: string, seq: number, ts: number): Promise<void> {
  await q.query(`INSERT INTO ledger_chains (chain, seq, ts) VALUES ($1, $2, $3)${CHAIN_UPSERT}`, [
    chain,
    seq,
    ts,
  ])
}
