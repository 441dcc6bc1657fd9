import type { SqlQueries, SqlRow } from '../dag/sql-access.js'
import { int, type Migration, type StateModule } from '../state/projection.js'
import type { AccountKind, AccountState, Entry, HoldState, HoldStatus } from './rules.js'

/**
 * The ledger's tables (module `economics`), the same on both backends. Every amount is a 64-bit integer
 * (INTEGER in SQLite, BIGINT in PostgreSQL) holding a safe integer.
 *
 * - `ledger_accounts`: one row per account, its manabar and running totals (the sums of its entries).
 * - `ledger_entries`: what each operation changed on each account, with the block's time: the history that
 *   `?at=` reads. Genesis allocations are entries of chain `genesis`, seq -1.
 * - `ledger_holds`: holds and how they ended.
 * - `ledger_nonces`: every member record's nonce used (replays are refused).
 * - `ledger_ops`: every operation of every folded ledger block and its outcome (applied, or the code that
 *   refused it), so a refusal reads the same on every node.
 * - `ledger_chains`: per ledger chain, the time and seq of its last folded block (time must not go back).
 */
function ddl(big: string): string {
  return `
CREATE TABLE ledger_accounts (
  did TEXT PRIMARY KEY, kind TEXT NOT NULL, home TEXT NOT NULL,
  mana ${big} NOT NULL, mana_ts ${big} NOT NULL, pool ${big} NOT NULL, held ${big} NOT NULL,
  allocated ${big} NOT NULL, regenerated ${big} NOT NULL, received ${big} NOT NULL, sent ${big} NOT NULL,
  burned ${big} NOT NULL
);
CREATE TABLE ledger_entries (
  chain TEXT NOT NULL, seq ${big} NOT NULL, idx INTEGER NOT NULL, account TEXT NOT NULL, ts ${big} NOT NULL,
  op TEXT NOT NULL, allocated ${big} NOT NULL, regenerated ${big} NOT NULL, received ${big} NOT NULL,
  sent ${big} NOT NULL, burned ${big} NOT NULL, pool ${big} NOT NULL, held ${big} NOT NULL,
  mana ${big}, mana_ts ${big},
  PRIMARY KEY (chain, seq, idx, account)
);
CREATE INDEX ledger_entries_account_ts ON ledger_entries (account, ts);
CREATE TABLE ledger_holds (
  id TEXT PRIMARY KEY, account TEXT NOT NULL, chain TEXT NOT NULL, amount ${big} NOT NULL,
  purpose TEXT NOT NULL, status TEXT NOT NULL, paid ${big} NOT NULL, payee TEXT
);
CREATE TABLE ledger_nonces (key TEXT PRIMARY KEY, member TEXT NOT NULL, expires ${big} NOT NULL);
CREATE TABLE ledger_ops (
  chain TEXT NOT NULL, seq ${big} NOT NULL, idx INTEGER NOT NULL, op TEXT NOT NULL, member TEXT,
  outcome TEXT NOT NULL, code TEXT, reason TEXT,
  PRIMARY KEY (chain, seq, idx)
);
CREATE TABLE ledger_chains (chain TEXT PRIMARY KEY, seq ${big} NOT NULL, ts ${big} NOT NULL)`
}

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    description: 'ledger accounts, entries, holds, nonces, operations and chains',
    sqlite: ddl('INTEGER'),
    postgres: ddl('BIGINT'),
  },
]

export const ECONOMICS_MODULE: StateModule = {
  name: 'economics',
  migrations: MIGRATIONS,
  tables: [
    { name: 'ledger_accounts', orderBy: ['did'] },
    { name: 'ledger_entries', orderBy: ['chain', 'seq', 'idx', 'account'] },
    { name: 'ledger_holds', orderBy: ['id'] },
    { name: 'ledger_nonces', orderBy: ['key'] },
    { name: 'ledger_ops', orderBy: ['chain', 'seq', 'idx'] },
    { name: 'ledger_chains', orderBy: ['chain'] },
  ],
}

const ACCOUNT_COLUMNS =
  'did, kind, home, mana, mana_ts, pool, held, allocated, regenerated, received, sent, burned'

export function accountFromRow(r: SqlRow): AccountState {
  return {
    did: String(r.did),
    kind: String(r.kind) as AccountKind,
    home: String(r.home),
    mana: int(r, 'mana'),
    manaTs: int(r, 'mana_ts'),
    pool: int(r, 'pool'),
    held: int(r, 'held'),
    allocated: int(r, 'allocated'),
    regenerated: int(r, 'regenerated'),
    received: int(r, 'received'),
    sent: int(r, 'sent'),
    burned: int(r, 'burned'),
  }
}

function holdFromRow(r: SqlRow): HoldState {
  return {
    id: String(r.id),
    account: String(r.account),
    chain: String(r.chain),
    amount: int(r, 'amount'),
    purpose: String(r.purpose),
    status: String(r.status) as HoldStatus,
    paid: int(r, 'paid'),
    payee: r.payee === null || r.payee === undefined ? null : String(r.payee),
  }
}

/** `$1, $2, …` for `n` values starting after `offset`. */
function placeholders(n: number, offset = 0): string {
  return Array.from({ length: n }, (_, i) => `$${offset + i + 1}`).join(', ')
}

/**
 * SQL texts built from a head, a count and a tail, kept once built: the statements here come in a few sizes (see
 * below), and building a 256-row VALUES list on every call cost more than running a small statement.
 */
const texts = new Map<string, string>()

function memo(key: string, build: () => string): string {
  let text = texts.get(key)
  if (text === undefined) {
    text = build()
    // The keys are bounded (a few statements × a few sizes); the limit only guards against a caller that is not.
    if (texts.size >= 1024) texts.clear()
    texts.set(key, text)
  }
  return text
}

/** Largest IN list sent in one query. */
const IN_CHUNK = 500

/**
 * The backends keep prepared statements by SQL text (SQLite: the last 256), so the statements here come in a few
 * sizes rather than one per count of keys or rows: an IN list is padded to the next power of two (repeating its
 * last key), and rows are inserted in chunks of these sizes (powers of two: n rows take one statement per bit of n).
 */
function paddedLength(n: number): number {
  let size = 1
  while (size < n) size *= 2
  return size
}
const INSERT_CHUNKS = [256, 128, 64, 32, 16, 8, 4, 2, 1]

/** `sql(list, next)`: `list` the IN list's placeholders, `next` the placeholder of `extra[0]` (then the others). */
async function selectIn(
  q: SqlQueries,
  sql: (list: string, next: number) => string,
  keys: string[],
  extra: unknown[] = [],
): Promise<SqlRow[]> {
  const out: SqlRow[] = []
  for (let i = 0; i < keys.length; i += IN_CHUNK) {
    const part = keys.slice(i, i + IN_CHUNK)
    const size = Math.min(IN_CHUNK, paddedLength(part.length))
    while (part.length < size) part.push(part[part.length - 1]!)
    const text = memo(`in ${part.length} ${sql('', 0)}`, () =>
      sql(placeholders(part.length), part.length + 1),
    )
    out.push(...(await q.query(text, [...part, ...extra])))
  }
  return out
}

export async function loadAccounts(
  q: SqlQueries,
  dids: Iterable<string>,
): Promise<Map<string, AccountState>> {
  const keys = [...new Set(dids)]
  const rows = await selectIn(
    q,
    (list) => `SELECT ${ACCOUNT_COLUMNS} FROM ledger_accounts WHERE did IN (${list})`,
    keys,
  )
  return new Map(rows.map((r) => [String(r.did), accountFromRow(r)]))
}

/**
 * Accounts in the order of their ids' UTF-16 code units: the same on every node. `ORDER BY did` follows the
 * database's collation, and a PostgreSQL database created with a language's collation (en-US: `a` before `B`)
 * sorts mixed-case DIDs unlike SQLite and a `C` database (`B` before `a`).
 */
function sortedByDid<T extends { did: string }>(accounts: T[]): T[] {
  return accounts.sort((a, b) => (a.did < b.did ? -1 : a.did > b.did ? 1 : 0))
}

export async function allAccounts(q: Pick<SqlQueries, 'query'>): Promise<AccountState[]> {
  const rows = await q.query(`SELECT ${ACCOUNT_COLUMNS} FROM ledger_accounts`)
  return sortedByDid(rows.map(accountFromRow))
}

export async function loadHolds(q: SqlQueries, ids: Iterable<string>): Promise<Map<string, HoldState>> {
  const rows = await selectIn(q, (list) => `SELECT * FROM ledger_holds WHERE id IN (${list})`, [
    ...new Set(ids),
  ])
  return new Map(rows.map((r) => [String(r.id), holdFromRow(r)]))
}

export function nonceKey(member: string, nonce: string): string {
  return `${member} ${nonce}`
}

export async function loadNonces(q: SqlQueries, keys: Iterable<string>): Promise<Set<string>> {
  const rows = await selectIn(q, (list) => `SELECT key FROM ledger_nonces WHERE key IN (${list})`, [
    ...new Set(keys),
  ])
  return new Set(rows.map((r) => String(r.key)))
}

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

/**
 * Apply an entry to its account row as deltas (and the manabar if the entry moved it). Credits from different
 * chains are additions, so they commute whatever order chains fold in.
 */
export async function applyEntry(
  q: SqlQueries,
  where: { chain: string; seq: number; idx: number; ts: number; op: string },
  e: Entry,
): Promise<void> {
  await q.query(
    `UPDATE ledger_accounts SET allocated = allocated + $2, regenerated = regenerated + $3,
       received = received + $4, sent = sent + $5, burned = burned + $6, pool = pool + $7, held = held + $8,
       mana = COALESCE($9, mana), mana_ts = COALESCE($10, mana_ts)
     WHERE did = $1`,
    [
      e.account,
      e.allocated,
      e.regenerated,
      e.received,
      e.sent,
      e.burned,
      e.pool,
      e.held,
      e.mana ?? null,
      e.manaTs ?? null,
    ],
  )
  await insertEntry(q, where, e)
}

export async function insertEntry(
  q: SqlQueries,
  where: { chain: string; seq: number; idx: number; ts: number; op: string },
  e: Entry,
): Promise<void> {
  await q.query(
    `INSERT INTO ledger_entries (chain, seq, idx, account, ts, op, allocated, regenerated, received, sent, burned,
       pool, held, mana, mana_ts) VALUES (${placeholders(15)})`,
    [
      where.chain,
      where.seq,
      where.idx,
      e.account,
      where.ts,
      where.op,
      e.allocated,
      e.regenerated,
      e.received,
      e.sent,
      e.burned,
      e.pool,
      e.held,
      e.mana ?? null,
      e.manaTs ?? null,
    ],
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
  const todo = writes.filter((w) => w.rows.length > 0)
  if (todo.length === 0) return
  if (q.dialect === 'postgres') {
    const statements = todo.map(({ table, columns, rows, tail = '' }) => {
      const names = columns.split(',').map((c) => c.trim())
      const json = JSON.stringify(rows.map((r) => Object.fromEntries(names.map((n, i) => [n, r[i]]))))
      const list = names.join(', ')
      // WHERE true: without it, the ON of a tail's ON CONFLICT could be read as a join condition.
      return `INSERT INTO ${table} (${list}) SELECT ${list} FROM json_populate_recordset(NULL::${table}, ${pgLiteral(json)}::json) WHERE true${tail}`
    })
    await q.exec(statements.join(';\n'))
    return
  }
  for (const { table, columns, rows, tail = '' } of todo) {
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

/** What one ledger block's fold writes, collected op by op and written at the end in a few statements. */
export interface FoldedRows {
  entries: { where: { chain: string; seq: number; idx: number; ts: number; op: string }; entry: Entry }[]
  nonces: { member: string; nonce: string; expires: number }[]
  holds: HoldState[]
  ops: {
    chain: string
    seq: number
    idx: number
    op: string
    member: string | null
    outcome: 'applied' | 'rejected'
    code: string | null
    reason: string | null
  }[]
}

/**
 * Write the folded rows of one or more blocks: the same result as `applyEntry` for each entry in order, then the
 * nonces, holds and ops, and each chain's last folded position (`chains`), but in one statement per table
 * instead of several per op (on PostgreSQL, all in one round trip). The accounts' deltas are summed per account
 * and applied in one multi-row upsert (every account exists: the rules refuse ops naming an unknown one), the
 * manabar taken from the account's last entry that moved it; a hold changed twice is written as it ended.
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
      columns:
        'chain, seq, idx, account, ts, op, allocated, regenerated, received, sent, burned, pool, held, mana, mana_ts',
      rows: rows.entries.map(({ where: w, entry: e }) => [
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
      ]),
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

export async function insertOp(
  q: SqlQueries,
  o: {
    chain: string
    seq: number
    idx: number
    op: string
    member: string | null
    outcome: 'applied' | 'rejected'
    code: string | null
    reason: string | null
  },
): Promise<void> {
  await q.query(
    `INSERT INTO ledger_ops (chain, seq, idx, op, member, outcome, code, reason)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [o.chain, o.seq, o.idx, o.op, o.member, o.outcome, o.code, o.reason],
  )
}

export async function chainState(
  q: Pick<SqlQueries, 'query'>,
  chain: string,
): Promise<{ seq: number; ts: number } | undefined> {
  const [r] = await q.query('SELECT seq, ts FROM ledger_chains WHERE chain = $1', [chain])
  return r ? { seq: int(r, 'seq'), ts: int(r, 'ts') } : undefined
}

export async function saveChainState(q: SqlQueries, chain: string, seq: number, ts: number): Promise<void> {
  await q.query(`INSERT INTO ledger_chains (chain, seq, ts) VALUES ($1, $2, $3)${CHAIN_UPSERT}`, [
    chain,
    seq,
    ts,
  ])
}

export async function opsOf(
  q: Pick<SqlQueries, 'query'>,
  chain: string,
  seq: number,
): Promise<{ idx: number; outcome: string; code: string | null; reason: string | null }[]> {
  const rows = await q.query(
    'SELECT idx, outcome, code, reason FROM ledger_ops WHERE chain = $1 AND seq = $2 ORDER BY idx',
    [chain, seq],
  )
  return rows.map((r) => ({
    idx: int(r, 'idx'),
    outcome: String(r.outcome),
    code: r.code === null || r.code === undefined ? null : String(r.code),
    reason: r.reason === null || r.reason === undefined ? null : String(r.reason),
  }))
}

/** Whether the account has an entry dated after `at` (ms), i.e. whether its row differs from its state then. */
export async function hasEntriesAfter(
  q: Pick<SqlQueries, 'query'>,
  did: string,
  at: number,
): Promise<boolean> {
  const rows = await q.query('SELECT 1 AS x FROM ledger_entries WHERE account = $1 AND ts > $2 LIMIT 1', [
    did,
    at,
  ])
  return rows.length > 0
}

/** Of `dids`, those with an entry dated after `at` (ms): one query for all of them. */
export async function accountsWithEntriesAfter(
  q: SqlQueries,
  dids: Iterable<string>,
  at: number,
): Promise<Set<string>> {
  const rows = await selectIn(
    q,
    (list, next) =>
      `SELECT DISTINCT account FROM ledger_entries WHERE account IN (${list}) AND ts > $${next}`,
    [...new Set(dids)],
    [at],
  )
  return new Set(rows.map((r) => String(r.account)))
}

/**
 * Every account as of `at` (ms), from the entries with a time at or before it: the sums of their deltas and the
 * manabar of each account's latest entry that moved it (seq -1 is the genesis). Accounts with no entry by then
 * are left out.
 */
export async function accountsAsOf(
  q: Pick<SqlQueries, 'query'>,
  at: number,
  did?: string,
): Promise<AccountState[]> {
  const filter = did === undefined ? '' : ' AND e.account = $2'
  const params = did === undefined ? [at] : [at, did]
  const sums = await q.query(
    `SELECT a.did, a.kind, a.home, SUM(e.allocated) AS allocated, SUM(e.regenerated) AS regenerated,
       SUM(e.received) AS received, SUM(e.sent) AS sent, SUM(e.burned) AS burned, SUM(e.pool) AS pool,
       SUM(e.held) AS held
     FROM ledger_entries e JOIN ledger_accounts a ON a.did = e.account
     WHERE e.ts <= $1${filter} GROUP BY a.did, a.kind, a.home`,
    params,
  )
  const manas = await q.query(
    `SELECT account, mana, mana_ts FROM (
       SELECT e.account, e.mana, e.mana_ts,
         ROW_NUMBER() OVER (PARTITION BY e.account ORDER BY e.ts DESC, e.seq DESC, e.idx DESC) AS rn
       FROM ledger_entries e WHERE e.mana IS NOT NULL AND e.ts <= $1${filter}) m
     WHERE rn = 1`,
    params,
  )
  const mana = new Map(
    manas.map((r) => [String(r.account), { mana: int(r, 'mana'), manaTs: int(r, 'mana_ts') }]),
  )
  return sortedByDid(
    sums.map((r) => {
      const m = mana.get(String(r.did)) ?? { mana: 0, manaTs: at }
      return { ...accountFromRow({ ...r, mana: m.mana, mana_ts: m.manaTs }) }
    }),
  )
}
