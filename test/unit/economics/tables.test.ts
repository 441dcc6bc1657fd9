import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { BlockStore } from '../../../src/dag/index.js'
import { SqliteBlockStore } from '../../../src/dag/index.js'
import { PostgresBlockStore } from '../../../src/dag/postgres.js'
import type { SqlQueries } from '../../../src/dag/sql-access.js'
import type { AccountState, Entry, HoldState } from '../../../src/economics/rules.js'
import {
  accountsWithEntriesAfter,
  ECONOMICS_MODULE,
  loadAccounts,
  loadNonces,
} from '../../../src/economics/tables.js'
import {
  type EntryWhere,
  type FoldedRows,
  insertAccount,
  insertEntry,
  insertNonce,
  insertOp,
  saveChainState,
  saveFolded,
  saveHold,
} from '../../../src/economics/writes.js'
import { createTestDatabase, type TestDatabase } from '../../helpers/pg.js'

const ACCOUNTS = ['did:a', 'did:b', 'did:c', 'treasury']

function account(did: string): AccountState {
  return {
    did,
    kind: did === 'treasury' ? 'treasury' : 'member',
    home: 'did:node',
    mana: 1000,
    manaTs: 5,
    pool: 10,
    held: 0,
    allocated: 1000,
    regenerated: 0,
    received: 0,
    sent: 0,
    burned: 0,
  }
}

/**
 * A block's worth of rows: `n` ops of two entries each over a few accounts (so deltas add up per account), some
 * moving the manabar and some not, one nonce and one op row each, some ops rejected.
 */
function rows(n: number): FoldedRows {
  const out: FoldedRows = { entries: [], nonces: [], holds: [], ops: [] }
  for (let idx = 0; idx < n; idx++) {
    const where = { chain: 'did:node/ledger', seq: 3, idx, ts: 1_000 + idx, op: 'transfer' }
    const from = ACCOUNTS[idx % 3]!
    const to = ACCOUNTS[(idx * 7 + 1) % 4]!
    if (idx % 5 === 4) {
      // Quotes, backslashes and non-ASCII go through PostgreSQL's literals unchanged.
      const reason = `again: it's \\ "${idx}" \\\\n ü ✓`
      out.ops.push({ ...where, member: from, outcome: 'rejected', code: 'NONCE_REUSED', reason })
      continue
    }
    const debit: Entry = {
      account: from,
      allocated: 0,
      regenerated: idx % 3,
      received: 0,
      sent: idx + 1,
      burned: 0,
      pool: idx % 2 === 0 ? -1 : 0,
      held: 0,
      ...(idx % 2 === 0 ? {} : { mana: 900 - idx, manaTs: 1_000 + idx }),
    }
    const credit: Entry = {
      account: to === from ? 'treasury' : to,
      allocated: 0,
      regenerated: 0,
      received: idx + 1,
      sent: 0,
      burned: 0,
      pool: idx + 1,
      held: 0,
    }
    out.entries.push({ where, entry: debit }, { where, entry: credit })
    out.nonces.push({ member: from, nonce: `nonce-${idx}`, expires: 9_000 + idx })
    out.ops.push({ ...where, member: from, outcome: 'applied', code: null, reason: null })
    if (idx % 7 === 3) {
      // A hold opened, and every other one settled later in the same rows: written as it ended.
      const hold: HoldState = {
        id: `${from} hold-${idx}`,
        account: from,
        chain: where.chain,
        amount: idx + 1,
        purpose: `job '${idx}' \\ ok`,
        status: 'open',
        paid: 0,
        payee: null,
      }
      out.holds.push(hold)
      if (idx % 2 === 1) out.holds.push({ ...hold, status: 'settled', paid: 1, payee: 'treasury' })
    }
  }
  return out
}

/** The chains' last folded positions the rows go with. */
const CHAINS = new Map([
  ['did:node/ledger', { seq: 3, ts: 1_336 }],
  ['did:other/ledger', { seq: 9, ts: 1_200 }],
])

/**
 * The reference saveFolded is checked against, as the fold once wrote an entry: its deltas added to its
 * account's row (and the manabar if the entry moved it), then the entry inserted.
 */
async function applyEntry(q: SqlQueries, where: EntryWhere, e: Entry): Promise<void> {
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

/** The same rows the way the fold wrote them before saveFolded: statement by statement, op by op. */
async function saveOneByOne(q: SqlQueries, r: FoldedRows): Promise<void> {
  for (const { where, entry } of r.entries) await applyEntry(q, where, entry)
  for (const n of r.nonces) await insertNonce(q, n)
  for (const h of r.holds) await saveHold(q, h)
  for (const o of r.ops) await insertOp(q, o)
  for (const [chain, c] of CHAINS) await saveChainState(q, chain, c.seq, c.ts)
}

async function dump(q: SqlQueries): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {}
  for (const t of ECONOMICS_MODULE.tables)
    out[t.name] = await q.query(`SELECT * FROM ${t.name} ORDER BY ${t.orderBy.join(', ')}`)
  return out
}

interface Backend {
  name: string
  open(): Promise<BlockStore>
}

const stores: BlockStore[] = []
const databases: TestDatabase[] = []
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-ledger-tables-'))
})
afterAll(async () => {
  for (const s of stores) await s.close()
  for (const d of databases) await d.drop()
  await rm(dir, { recursive: true, force: true })
})

const backends: Backend[] = [
  {
    name: 'sqlite',
    open: async () => {
      const s = new SqliteBlockStore({ path: join(dir, `s${stores.length}`, 'blocks.db') })
      await s.open()
      return s
    },
  },
  {
    name: 'postgres',
    open: async () => {
      const d = await createTestDatabase()
      databases.push(d)
      const s = new PostgresBlockStore({ url: d.url })
      await s.open()
      return s
    },
  },
]

describe.each(backends)('ledger tables on $name', (backend) => {
  async function fresh(): Promise<SqlQueries> {
    const store = await backend.open()
    stores.push(store)
    const sql = store.sql()
    const m = ECONOMICS_MODULE.migrations[0]!
    await sql.exec(sql.dialect === 'sqlite' ? m.sqlite : m.postgres)
    for (const did of ACCOUNTS) await insertAccount(sql, account(did))
    return sql
  }

  it.each([1, 5, 23, 337])('saveFolded writes what op-by-op statements write (%i ops)', async (n) => {
    const [one, batched] = [await fresh(), await fresh()]
    const r = rows(n)
    await saveOneByOne(one, r)
    await saveFolded(batched, r, CHAINS)
    const expected = await dump(one)
    expect(expected.ledger_entries!.length).toBe(r.entries.length)
    expect(expected.ledger_chains!.length).toBe(2)
    if (n > 5) expect(expected.ledger_holds!.length).toBeGreaterThan(1)
    expect(await dump(batched)).toEqual(expected)
  })

  it('a failing row writes nothing of its block in a transaction (a nonce used twice)', async () => {
    const sql = await fresh()
    const r = rows(6)
    r.nonces.push(r.nonces[0]!)
    const store = stores[stores.length - 1]!
    await expect(store.sql().transaction((tx) => saveFolded(tx, r))).rejects.toThrow()
    expect((await dump(sql)).ledger_entries).toEqual([])
    expect((await loadAccounts(sql, ['did:a'])).get('did:a')).toEqual(account('did:a'))
  })

  it('accountsWithEntriesAfter names the accounts with an entry dated after the instant, in one query', async () => {
    const sql = await fresh()
    const r = rows(4) // ts 1000..1003; op 0 debits did:a (to did:b), op 3 debits did:a (to treasury)
    await saveFolded(sql, r)
    const all = ['did:a', 'did:b', 'did:c', 'treasury', 'did:none']
    expect([...(await accountsWithEntriesAfter(sql, all, 999))].sort()).toEqual(
      [...new Set(r.entries.map((e) => e.entry.account))].sort(),
    )
    const after2 = r.entries.filter((e) => e.where.ts > 1002).map((e) => e.entry.account)
    expect(after2.length).toBeGreaterThan(0)
    expect([...(await accountsWithEntriesAfter(sql, all, 1002))].sort()).toEqual([...new Set(after2)].sort())
    expect(await accountsWithEntriesAfter(sql, all, 1003)).toEqual(new Set())
  })

  it('padded IN lists return each key once', async () => {
    const sql = await fresh()
    await saveFolded(sql, rows(4))
    const got = await loadAccounts(sql, ['did:a', 'did:b', 'treasury'])
    expect([...got.keys()].sort()).toEqual(['did:a', 'did:b', 'treasury'])
    const nonces = await loadNonces(sql, [
      'did:a nonce-0',
      'did:b nonce-1',
      'did:c nonce-2',
      'did:x nope',
      'z',
    ])
    expect([...nonces].sort()).toEqual(['did:a nonce-0', 'did:b nonce-1', 'did:c nonce-2'])
  })
})
