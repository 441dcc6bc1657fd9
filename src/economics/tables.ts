import type { SqlQueries, SqlRow } from '../dag/sql-access.js'
import { int, type Migration, type StateModule } from '../state/projection.js'
import type { AccountKind, AccountState, HoldState, HoldStatus } from './rules.js'
import { IN_CHUNK, memo, paddedLength, placeholders } from './sql-text.js'

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

export const ACCOUNT_COLUMNS =
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

export async function chainState(
  q: Pick<SqlQueries, 'query'>,
  chain: string,
): Promise<{ seq: number; ts: number } | undefined> {
  const [r] = await q.query('SELECT seq, ts FROM ledger_chains WHERE chain = $1', [chain])
  return r ? { seq: int(r, 'seq'), ts: int(r, 'ts') } : undefined
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
