/**
 * The SQL side of the PostgreSQL backend: connection-error classification, pooled clients that cannot crash the
 * process, the batch write (one look-up round trip, one write statement) and migrations. `postgres.ts` holds
 * the BlockStore class built on these.
 */
import type pg from 'pg'
import { IcnError } from '../identity/index.js'
import type { ValidatedBlock } from './block.js'
import { type CID, cidFromBytes } from './cid.js'
import { type BatchPlan, lookupsFor, planBatch, positionKey } from './plan.js'
import { POSTGRES_MIGRATIONS } from './postgres-schema.js'
import type { ChainHead } from './store.js'

export type Row = Record<string, unknown>

/** Advisory lock key (in `hashtextextended` space) held while migrating; chain ids all start with `did:`. */
const MIGRATION_LOCK = "hashtextextended('icn:schema_migrations', 0)"
/** Errors worth retrying the whole transaction for (deadlock, serialization failure). */
export const RETRYABLE = new Set(['40P01', '40001'])
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  '53300', // too_many_connections
  '57014', // query_canceled (statement_timeout)
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
])
const CONNECTION_MESSAGES =
  /connection terminated|connection error|timeout exceeded when trying to connect|not queryable|connection ended|terminating connection|query read timeout|server closed the connection/i

/** Whether an error means the database could not be reached or dropped the connection (not bad input). */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof IcnError) return false
  const code = (err as { code?: unknown })?.code
  if (typeof code === 'string' && (CONNECTION_CODES.has(code) || code.startsWith('08'))) return true
  const errors = (err as { errors?: unknown })?.errors // AggregateError from a dual-stack connect
  if (Array.isArray(errors) && errors.some(isConnectionError)) return true
  return CONNECTION_MESSAGES.test((err as Error)?.message ?? '')
}

/** How a write transaction checks that this process still holds the store's session-level advisory lock. */
export interface LockCheck {
  /** Backend pid of the connection holding the lock. */
  pid: number
  /** The lock's 64-bit key as pg_locks shows it: high half, low half. */
  classid: number
  objid: number
}

/** The lock connection no longer holds the store's lock (found inside a write transaction, which rolls back). */
export class LockNotHeld extends Error {
  constructor() {
    super('the store lock is no longer held by this process')
  }
}

/** Close a client's socket at once, without waiting for the server (which may not be answering). */
export function destroyClient(client: pg.Client): void {
  ;(client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
  void client.end().catch(() => {})
}

/** `host:port/database` of a connection URL, without user or password. */
export function describePgUrl(url: string): string {
  try {
    const u = new URL(url)
    const host = u.hostname || u.searchParams.get('host') || 'localhost'
    const db =
      decodeURIComponent(u.pathname.replace(/^\//, '')) || decodeURIComponent(u.username) || 'postgres'
    return `${host}:${u.port || '5432'}/${db}`
  } catch {
    return '(unparseable PostgreSQL URL)'
  }
}

/**
 * The first round trip of a put, as one simple-protocol query: BEGIN, an advisory lock per chain (in key order,
 * so two writers never wait on each other in a cycle; the key is `hashtextextended(chain, 0)`, the same in every
 * process), then the lookups. Each statement takes its own snapshot (READ COMMITTED), so the lookups see all that
 * an earlier holder of a lock committed. The values are inlined: integers, hex, and chain ids (validated by
 * `validateBlock`, and escaped all the same). LATERAL ... LIMIT 1 keeps each position an index probe; joined
 * plainly, the planner may hash the whole table.
 */
function beginSql(
  client: pg.PoolClient,
  chainIds: string[],
  wanted: { c: number; seq: number }[],
  raw: CID[],
  opts: ApplyOptions,
): string {
  const chains = `ARRAY[${chainIds.map((c) => client.escapeLiteral(c)).join(',')}]::text[]`
  const hex = (b: Uint8Array): string => `decode('${Buffer.from(b).toString('hex')}', 'hex')`
  const out = ['BEGIN']
  if (opts.statementTimeoutMs !== undefined)
    out.push(`SET LOCAL statement_timeout = ${Math.floor(opts.statementTimeoutMs)}`)
  if (opts.lock) {
    const { pid, classid, objid } = opts.lock
    out.push(`SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND pid = ${Math.floor(pid)} AND classid = ${Math.floor(classid)} AND objid = ${Math.floor(objid)}) AS held`)
  }
  if (chainIds.length > 0)
    out.push(`SELECT pg_advisory_xact_lock(k)
      FROM (SELECT DISTINCT hashtextextended(c, 0) AS k FROM unnest(${chains}) AS c) AS keys ORDER BY k`)
  out.push(`SELECT 'p' AS kind, q.c, q.seq, e.cid
      FROM unnest(ARRAY[${wanted.map((w) => w.c).join(',')}]::int[], ARRAY[${wanted.map((w) => w.seq).join(',')}]::bigint[])
        AS q(c, seq)
      CROSS JOIN LATERAL (
        SELECT cid FROM chain_entries WHERE chain = (${chains})[q.c] AND seq = q.seq LIMIT 1
      ) AS e
    UNION ALL
    SELECT 'a', NULL::int, NULL::bigint, r.cid
      FROM unnest(ARRAY[${raw.map((c) => hex(c.bytes)).join(',')}]::bytea[]) AS r(cid)
      WHERE EXISTS (SELECT 1 FROM links l JOIN blocks b ON b.cid = l.parent WHERE l.child = r.cid)`)
  return out.join(';\n')
}

/**
 * Every bytea value of a batch travels in ONE binary parameter ($1), each value named by its offset and length
 * (`substring($1 FROM off FOR len)`): no hex text (twice the bytes) and no per-element array parsing. Chain ids
 * are sent once ($3) and referenced by index.
 */
const WRITE = `WITH
  nb AS (
    INSERT INTO blocks (cid, codec, size, data, stored_at)
    SELECT substring($1::bytea FROM co FOR cl), codec, dl, substring($1::bytea FROM d FOR dl), $2
      FROM unnest($4::int[], $5::int[], $6::int[], $7::int[], $8::int[])
        WITH ORDINALITY AS t(co, cl, codec, d, dl, ord)
      ORDER BY ord
    ON CONFLICT (cid) DO NOTHING
    RETURNING cid
  ),
  ne AS (
    INSERT INTO chain_entries (chain, seq, cid)
    SELECT ($3::text[])[c], seq, substring($1::bytea FROM co FOR cl)
      FROM unnest($9::int[], $10::bigint[], $11::int[], $12::int[]) AS t(c, seq, co, cl)
  ),
  nl AS (
    INSERT INTO links (parent, child)
    SELECT substring($1::bytea FROM po FOR pl), substring($1::bytea FROM co FOR cl)
      FROM unnest($13::int[], $14::int[], $15::int[], $16::int[]) AS t(po, pl, co, cl)
    ON CONFLICT DO NOTHING
  ),
  nv AS (
    INSERT INTO evidence (chain, seq, first_cid, second_cid, detected_at)
    SELECT ($3::text[])[c], seq, substring($1::bytea FROM fo FOR fl), substring($1::bytea FROM so FOR sl), $2
      FROM unnest($17::int[], $18::bigint[], $19::int[], $20::int[], $21::int[], $22::int[])
        AS t(c, seq, fo, fl, so, sl)
    ON CONFLICT DO NOTHING
  ),
  nh AS (
    INSERT INTO chains (chain, author, head_seq, head_cid)
    SELECT ($3::text[])[c], author, seq, substring($1::bytea FROM co FOR cl)
      FROM unnest($23::int[], $24::text[], $25::bigint[], $26::int[], $27::int[]) AS t(c, author, seq, co, cl)
    ON CONFLICT (chain) DO UPDATE SET head_seq = excluded.head_seq, head_cid = excluded.head_cid
      WHERE excluded.head_seq > chains.head_seq
  )
  SELECT cid FROM nb`

/** Byte strings packed into one buffer; `add` returns the 1-based offset and the length, as SQL substring wants. */
class Packer {
  private readonly parts: Uint8Array[] = []
  private size = 0

  add(bytes: Uint8Array): [number, number] {
    this.parts.push(bytes)
    const at = this.size + 1
    this.size += bytes.length
    return [at, bytes.length]
  }

  /** Column arrays (offsets, lengths) for a list of byte strings. */
  column(values: Uint8Array[]): [number[], number[]] {
    const offsets: number[] = []
    const lengths: number[] = []
    for (const v of values) {
      const [o, l] = this.add(v)
      offsets.push(o)
      lengths.push(l)
    }
    return [offsets, lengths]
  }

  buffer(): Buffer {
    return Buffer.concat(this.parts, this.size)
  }
}

export interface ApplyOptions {
  /** Server-side limit on each statement of the transaction (`SET LOCAL statement_timeout`). */
  statementTimeoutMs?: number
  /** Refuse (LockNotHeld) unless this lock is still held, checked in the first round trip. */
  lock?: LockCheck
  /** The time recorded with new chain entries and evidence (ms since the epoch); default Date.now(). */
  now?: number
}

/** Begin, lock the batch's chains and look up (one round trip), plan, and write (one more). */
export async function apply(
  client: pg.PoolClient,
  blocks: ValidatedBlock[],
  opts: ApplyOptions = {},
): Promise<BatchPlan> {
  const chainIndex = new Map<string, number>()
  for (const b of blocks)
    if (b.kind === 'signed' && !chainIndex.has(b.block.chain)) chainIndex.set(b.block.chain, 0)
  const chainIds = [...chainIndex.keys()]
  for (const [i, c] of chainIds.entries()) chainIndex.set(c, i + 1)
  const idx = (chain: string): number => chainIndex.get(chain)!
  const { positions, raw } = lookupsFor(blocks)
  const wanted = [...new Map(positions.map((p) => [positionKey(p.chain, p.seq), p])).values()]
  const results = (await client.query(
    beginSql(
      client,
      chainIds,
      wanted.map((p) => ({ c: idx(p.chain), seq: p.seq })),
      raw,
      opts,
    ),
  )) as unknown as pg.QueryResult[]
  if (opts.lock) {
    const held = results[opts.statementTimeoutMs !== undefined ? 2 : 1]?.rows[0] as Row | undefined
    if (held?.held !== true) throw new LockNotHeld()
  }
  const known = new Map<string, CID>()
  const anchored = new Set<string>()
  for (const r of results[results.length - 1]!.rows as Row[]) {
    const cid = cidFromBytes(r.cid as Uint8Array)
    if (r.kind === 'p') known.set(positionKey(chainIds[Number(r.c) - 1]!, Number(r.seq)), cid)
    else anchored.add(cid.toString())
  }
  const plan = planBatch({ blocks, positions: known, anchored })

  // Raw chunks may be shared between batches of different chains (not serialised by the chain locks):
  // inserting them in CID order means two transactions can never wait on each other in a cycle.
  const signed = plan.inserts.filter((b) => b.kind === 'signed')
  const chunks = plan.inserts
    .filter((b) => b.kind === 'raw')
    .sort((a, b) => Buffer.compare(a.cid.bytes, b.cid.bytes))
  const inserts = [...signed, ...chunks]
  const pack = new Packer()
  const blockCids = pack.column(inserts.map((b) => b.cid.bytes))
  const blockData = pack.column(inserts.map((b) => b.bytes))
  const entryCids = pack.column(plan.entries.map((e) => e.cid.bytes))
  const parents = pack.column(plan.links.map((l) => l.parent.bytes))
  const children = pack.column(plan.links.map((l) => l.child.bytes))
  const firsts = pack.column(plan.evidence.map((e) => e.first.bytes))
  const seconds = pack.column(plan.evidence.map((e) => e.second.bytes))
  const headCids = pack.column(plan.heads.map((h) => h.cid.bytes))
  const res = await client.query({
    name: 'icn_write',
    text: WRITE,
    values: [
      pack.buffer(),
      opts.now ?? Date.now(),
      chainIds,
      ...blockCids,
      inserts.map((b) => b.cid.code),
      ...blockData,
      plan.entries.map((e) => idx(e.chain)),
      plan.entries.map((e) => e.seq),
      ...entryCids,
      ...parents,
      ...children,
      plan.evidence.map((e) => idx(e.chain)),
      plan.evidence.map((e) => e.seq),
      ...firsts,
      ...seconds,
      plan.heads.map((h) => idx(h.chain)),
      plan.heads.map((h) => h.author),
      plan.heads.map((h) => h.seq),
      ...headCids,
    ],
  })

  // A raw chunk the store already held is reported as a duplicate (as SQLite's markDuplicate does).
  const inserted = new Map<string, number>()
  for (const r of res.rows as Row[]) {
    const key = Buffer.from(r.cid as Uint8Array).toString('hex')
    inserted.set(key, (inserted.get(key) ?? 0) + 1)
  }
  for (const b of plan.inserts) {
    if (b.kind !== 'raw') continue
    const key = Buffer.from(b.cid.bytes).toString('hex')
    const left = inserted.get(key) ?? 0
    if (left > 0) {
      inserted.set(key, left - 1)
      continue
    }
    const at = blocks.indexOf(b)
    if (at >= 0 && plan.results[at]?.status === 'stored')
      plan.results[at] = { cid: b.cid, status: 'duplicate' }
  }
  return plan
}

/**
 * Bring the schema up to date. Under a transaction-scoped advisory lock, so nodes starting together on one
 * database never race; when nothing is missing (the usual start) that is one round trip. All missing migrations
 * are applied in one transaction: a failure leaves the schema as it was.
 */
export async function migrate(client: pg.PoolClient, at: number = Date.now()): Promise<void> {
  const latest = Math.max(...POSTGRES_MIGRATIONS.map((m) => m.version))
  const check = async (sql: string): Promise<Set<number>> => {
    const results = (await client.query(sql)) as unknown as pg.QueryResult[]
    const applied = new Set((results[results.length - 1]!.rows as Row[]).map((r) => Number(r.version)))
    const newest = Math.max(0, ...applied)
    if (newest > latest)
      throw new Error(`database schema version ${newest} is newer than this icn (${latest}); upgrade icn`)
    return applied
  }
  const lock = `SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`
  const applied = await check(`${lock};
    CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);
    SELECT version FROM schema_migrations`)
  if (POSTGRES_MIGRATIONS.every((m) => applied.has(m.version))) return
  try {
    const now = await check(`BEGIN; ${lock}; SELECT version FROM schema_migrations`)
    for (const m of POSTGRES_MIGRATIONS) {
      if (now.has(m.version)) continue
      await client.query(m.sql)
      await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        at,
      ])
    }
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

export function headFromRow(r: Row): ChainHead {
  return {
    chain: r.chain as string,
    author: r.author as string,
    seq: Number(r.head_seq),
    cid: cidFromBytes(r.head_cid as Uint8Array),
  }
}

export function errorText(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0)
    return err.errors.map((e) => (e as Error).message).join('; ')
  const msg = (err as Error)?.message
  return msg || String((err as { code?: unknown })?.code ?? err)
}
