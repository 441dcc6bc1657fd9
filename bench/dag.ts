/**
 * DAG store benchmark: bare Ed25519 verify, raw driver throughput, validated ICN ingest and point reads, on
 * SQLite (temp dir) and PostgreSQL (a fresh database, dropped at the end). See bench/README.md.
 *
 *   npm run build && node dist/bench/dag.js [--blocks N] [--json] [--require-pg]
 */
import { createPublicKey, type KeyObject, randomBytes, verify } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import * as dagCbor from '@ipld/dag-cbor'
import Database from 'better-sqlite3'
import pg from 'pg'
import {
  type Block,
  type BlockStore,
  type CID,
  chainId,
  createSignedBlock,
  type SignedBlock,
  SqliteBlockStore,
  validateBlock,
} from '../src/dag/index.js'
import { PostgresBlockStore } from '../src/dag/postgres.js'
import { blockTag, domainBytes, InlineVerifier, Signer, WorkerVerifier } from '../src/identity/index.js'

const BATCH = 500
const PIPELINE = 2
const IN_FLIGHT = 16
const SIGNERS = 5
const CHAINS = 20
const BODY_BYTES = 960
const RECORD_TYPE = 'bench.note/v1'
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const DEFAULT_PG_URL = 'postgres://postgres@127.0.0.1:5432/test'

interface Rate {
  ops: number
  seconds: number
  perSecond: number
}

interface BackendFigures {
  rawInsert: Rate
  rawGet: Rate
  rawGetParallel?: Rate
  ingest: Rate
  get: Rate
  getParallel?: Rate
  /** The verify baseline measured again just before this ingest, so both run under the same machine load. */
  verifyBeforeIngest: Rate
  ingestOverVerify: number
  ingestOverRawInsert: number
  /** Ingest with signatures verified on the calling thread (one core for everything), for comparison. */
  ingestInline?: Rate
}

interface Fixture {
  blocks: Block[]
  /** For the verify baseline: the exact bytes the signature covers, the signature and the cached key. */
  signed: { message: Uint8Array; sig: Uint8Array; key: KeyObject }[]
  avgBytes: number
}

function out(line = ''): void {
  process.stdout.write(`${line}\n`)
}

async function measure(ops: number, fn: () => unknown): Promise<Rate> {
  const t0 = performance.now()
  await fn()
  const seconds = (performance.now() - t0) / 1000
  return { ops, seconds, perSecond: ops / seconds }
}

/** Signed blocks across CHAINS chains by SIGNERS signers, round robin, so any prefix is a valid ingest order. */
function generate(n: number): Fixture {
  const signers = Array.from({ length: SIGNERS }, () => Signer.generate())
  const keys = new Map(
    signers.map((s) => [
      s.did,
      createPublicKey({ key: Buffer.concat([SPKI_PREFIX, s.publicKey]), format: 'der', type: 'spki' }),
    ]),
  )
  const chains = Array.from({ length: CHAINS }, (_, i) => {
    const signer = signers[i % SIGNERS]!
    return { signer, chain: chainId(signer.did, `bench-${i}`), prev: null as CID | null, seq: 0 }
  })
  const blocks: Block[] = []
  const signed: Fixture['signed'] = []
  let bytes = 0
  for (let i = 0; i < n; i++) {
    const c = chains[i % CHAINS]!
    const b = createSignedBlock(c.signer, {
      type: RECORD_TYPE,
      chain: c.chain,
      seq: c.seq,
      prev: c.prev,
      ts: Date.now(),
      body: { i, data: new Uint8Array(randomBytes(BODY_BYTES)) },
    })
    c.prev = b.cid
    c.seq++
    // A copy of the bytes, as a block from the network is: the store skips the signature check of the very
    // bytes this process signed (createSignedBlock), and this measures validated ingest.
    blocks.push({ cid: b.cid, bytes: new Uint8Array(b.bytes) })
    bytes += b.bytes.length
    const { sig, ...unsigned } = b.block as SignedBlock
    signed.push({
      message: domainBytes(blockTag(RECORD_TYPE), dagCbor.encode(unsigned)),
      sig,
      key: keys.get(c.signer.did)!,
    })
  }
  return { blocks, signed, avgBytes: Math.round(bytes / n) }
}

function shuffled<T>(items: T[], count: number): T[] {
  const out: T[] = []
  for (let i = 0; i < count; i++) out.push(items[Math.floor(Math.random() * items.length)]!)
  return out
}

async function parallel<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: width }, worker))
}

function verifyBaseline(f: Fixture): Rate {
  // Warm up the JIT and OpenSSL on a few hundred, then time them all.
  for (const s of f.signed.slice(0, 500)) verify(null, s.message, s.key, s.sig)
  const t0 = performance.now()
  let ok = 0
  for (const s of f.signed) if (verify(null, s.message, s.key, s.sig)) ok++
  const seconds = (performance.now() - t0) / 1000
  if (ok !== f.signed.length) throw new Error('baseline: a signature did not verify')
  return { ops: f.signed.length, seconds, perSecond: f.signed.length / seconds }
}

function validateOnly(f: Fixture): Rate {
  for (const b of f.blocks.slice(0, 500)) validateBlock(b.cid, b.bytes)
  const t0 = performance.now()
  for (const b of f.blocks) validateBlock(b.cid, b.bytes)
  const seconds = (performance.now() - t0) / 1000
  return { ops: f.blocks.length, seconds, perSecond: f.blocks.length / seconds }
}

/**
 * Batches in order, up to PIPELINE of them in flight, as a sync of many blocks would send them: the store
 * commits in call order, so batch k+1's signatures are checked while batch k is written.
 */
async function ingest(store: BlockStore, blocks: Block[]): Promise<Rate> {
  return measure(blocks.length, async () => {
    const inFlight: Promise<void>[] = []
    for (let i = 0; i < blocks.length; i += BATCH) {
      inFlight.push(
        store.putMany(blocks.slice(i, i + BATCH), { source: 'local' }).then((results) => {
          if (results.some((r) => r.status !== 'stored'))
            throw new Error('ingest: a block was not stored as new')
        }),
      )
      if (inFlight.length >= PIPELINE) await inFlight.shift()
    }
    await Promise.all(inFlight)
  })
}

async function benchSqlite(dir: string, f: Fixture, reads: CID[]): Promise<BackendFigures> {
  // (b) raw driver: same pragmas as the store, a plain rowid table, one transaction per batch.
  const db = new Database(join(dir, 'raw.db'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.exec('CREATE TABLE raw_blocks (id INTEGER PRIMARY KEY, cid BLOB NOT NULL UNIQUE, data BLOB NOT NULL)')
  const insert = db.prepare('INSERT INTO raw_blocks (cid, data) VALUES (?, ?)')
  const insertBatch = db.transaction((batch: Block[]) => {
    for (const b of batch) insert.run(b.cid.bytes, b.bytes)
  })
  const rawInsert = await measure(f.blocks.length, () => {
    for (let i = 0; i < f.blocks.length; i += BATCH) insertBatch(f.blocks.slice(i, i + BATCH))
  })
  const select = db.prepare('SELECT data FROM raw_blocks WHERE cid = ?')
  const rawGet = await measure(reads.length, () => {
    for (const cid of reads) if (!select.get(cid.bytes)) throw new Error('raw read: missing')
  })
  db.close()

  // (c), (d) the store.
  // As the node runs it: signatures checked on worker threads beside decoding and storing.
  const verifier = new WorkerVerifier()
  const store = new SqliteBlockStore({ path: join(dir, 'store', 'blocks.db') }, { verifier })
  const inlineStore = new SqliteBlockStore(
    { path: join(dir, 'store-inline', 'blocks.db') },
    { verifier: new InlineVerifier() },
  )
  await store.open()
  await inlineStore.open()
  try {
    const verifyRate = verifyBaseline(f)
    const ingestRate = await ingest(store, f.blocks)
    const ingestInline = await ingest(inlineStore, f.blocks)
    const get = await measure(reads.length, async () => {
      for (const cid of reads) await store.get(cid)
    })
    return {
      rawInsert,
      rawGet,
      ingest: ingestRate,
      ingestInline,
      get,
      verifyBeforeIngest: verifyRate,
      ingestOverVerify: ingestRate.perSecond / verifyRate.perSecond,
      ingestOverRawInsert: ingestRate.perSecond / rawInsert.perSecond,
    }
  } finally {
    await store.close()
    await inlineStore.close()
    await verifier.close()
  }
}

function pgUrl(): string {
  return process.env.ICN_BENCH_PG_URL || process.env.ICN_TEST_PG_URL || DEFAULT_PG_URL
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

/** `host:port/db` without credentials, for messages. */
function where(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`
  } catch {
    return '(unparseable URL)'
  }
}

async function benchPostgres(
  adminUrl: string,
  f: Fixture,
  reads: CID[],
): Promise<BackendFigures | { skipped: string }> {
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 })
  try {
    await admin.connect()
  } catch (err) {
    return { skipped: `cannot connect to ${where(adminUrl)}: ${(err as Error).message}` }
  }
  const name = `icn_bench_${process.pid}_${Date.now()}`
  try {
    try {
      await admin.query(`CREATE DATABASE ${name}`)
    } catch (err) {
      return { skipped: `cannot create a database on ${where(adminUrl)}: ${(err as Error).message}` }
    }
    const url = withDatabase(adminUrl, name)

    // (b) raw driver: a pool the size of the store's default (8).
    const pool = new pg.Pool({ connectionString: url, max: 8 })
    let rawInsert: Rate
    let rawGet: Rate
    let rawGetParallel: Rate
    try {
      await pool.query('CREATE TABLE raw_blocks (cid bytea PRIMARY KEY, data bytea NOT NULL)')
      rawInsert = await measure(f.blocks.length, async () => {
        for (let i = 0; i < f.blocks.length; i += BATCH) {
          const batch = f.blocks.slice(i, i + BATCH)
          await pool.query(
            'INSERT INTO raw_blocks (cid, data) SELECT * FROM unnest($1::bytea[], $2::bytea[])',
            [
              batch.map((b) => Buffer.from(b.cid.bytes)),
              batch.map((b) => Buffer.from(b.bytes.buffer, b.bytes.byteOffset, b.bytes.byteLength)),
            ],
          )
        }
      })
      const one = await pool.connect()
      try {
        rawGet = await measure(reads.length, async () => {
          for (const cid of reads) {
            const r = await one.query({
              name: 'raw-get',
              text: 'SELECT data FROM raw_blocks WHERE cid = $1',
              values: [Buffer.from(cid.bytes)],
            })
            if (r.rowCount !== 1) throw new Error('raw read: missing')
          }
        })
      } finally {
        one.release()
      }
      rawGetParallel = await measure(reads.length, () =>
        parallel(reads, IN_FLIGHT, async (cid) => {
          const r = await pool.query({
            name: 'raw-get',
            text: 'SELECT data FROM raw_blocks WHERE cid = $1',
            values: [Buffer.from(cid.bytes)],
          })
          if (r.rowCount !== 1) throw new Error('raw read: missing')
        }),
      )
    } finally {
      await pool.end()
    }

    // (c), (d) the store.
    const verifier = new WorkerVerifier()
    const store = new PostgresBlockStore({ url }, { verifier })
    await store.open()
    try {
      const verifyRate = verifyBaseline(f)
      const ingestRate = await ingest(store, f.blocks)
      const get = await measure(reads.length, async () => {
        for (const cid of reads) await store.get(cid)
      })
      const getParallel = await measure(reads.length, () =>
        parallel(reads, IN_FLIGHT, (cid) => store.get(cid)),
      )
      return {
        rawInsert,
        rawGet,
        rawGetParallel,
        ingest: ingestRate,
        get,
        getParallel,
        verifyBeforeIngest: verifyRate,
        ingestOverVerify: ingestRate.perSecond / verifyRate.perSecond,
        ingestOverRawInsert: ingestRate.perSecond / rawInsert.perSecond,
      }
    } finally {
      await store.close()
      await verifier.close()
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch((err: Error) => {
      process.stderr.write(`warning: could not drop database ${name}: ${err.message}\n`)
    })
    await admin.end()
  }
}

function fmt(rate: Rate | undefined): string {
  return rate ? Math.round(rate.perSecond).toLocaleString('en-US') : '-'
}

function ratio(value: number | undefined, target?: number): string {
  if (value === undefined) return '-'
  const text = value.toFixed(2)
  return target === undefined
    ? text
    : `${text} ${value >= target ? '(ok, target' : '(BELOW target'} ≥ ${target})`
}

function printTable(rows: [string, string, string][]): void {
  const w0 = Math.max(...rows.map((r) => r[0].length))
  const w1 = Math.max(...rows.map((r) => r[1].length))
  for (const [i, r] of rows.entries()) {
    out(`${r[0].padEnd(w0)}  ${r[1].padStart(w1)}  ${r[2]}`)
    if (i === 0) out(`${'-'.repeat(w0)}  ${'-'.repeat(w1)}  ${'-'.repeat(Math.max(10, r[2].length))}`)
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      blocks: { type: 'string', default: '20000' },
      json: { type: 'boolean', default: false },
      'require-pg': { type: 'boolean', default: false },
    },
  })
  const n = Number(values.blocks)
  if (!Number.isSafeInteger(n) || n < BATCH) throw new Error(`--blocks must be an integer ≥ ${BATCH}`)
  const hardware = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: os.loadavg().map((l) => Number(l.toFixed(2))),
  }
  if (!values.json) {
    out(`ICN DAG benchmark: ${n} signed blocks, ${CHAINS} chains, ${SIGNERS} signers, batches of ${BATCH}`)
    out(
      `hardware: ${hardware.cpus} CPUs (${hardware.cpuModel}), ${hardware.memoryGiB} GiB, node ${hardware.node}`,
    )
    out(
      `          ${hardware.platform}; load average ${hardware.loadAverage.join(' ')} (other work skews figures)`,
    )
    out('generating and signing blocks (not timed)...')
  }
  const fixture = generate(n)
  const reads = shuffled(
    fixture.blocks.map((b) => b.cid),
    Math.min(n, 20_000),
  )
  const verifyRate = verifyBaseline(fixture)
  const validateRate = validateOnly(fixture)

  const dir = await mkdtemp(join(os.tmpdir(), 'icn-bench-'))
  let sqlite: BackendFigures
  try {
    sqlite = await benchSqlite(dir, fixture, reads)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const adminUrl = pgUrl()
  const postgres = await benchPostgres(adminUrl, fixture, reads)
  const pgFigures = 'skipped' in postgres ? undefined : postgres

  if (values.json) {
    out(
      JSON.stringify(
        {
          hardware,
          params: {
            blocks: n,
            avgBlockBytes: fixture.avgBytes,
            chains: CHAINS,
            signers: SIGNERS,
            batch: BATCH,
          },
          verify: verifyRate,
          validateBlock: validateRate,
          sqlite,
          postgres: pgFigures ?? { skipped: (postgres as { skipped: string }).skipped },
          targets: { sqliteIngestOverVerify: 0.7, postgresIngestOverVerify: 0.5 },
        },
        null,
        2,
      ),
    )
  } else {
    out(`blocks average ${fixture.avgBytes} bytes; ${reads.length} random point reads`)
    out()
    printTable([
      ['ops/s (one process)', 'SQLite', 'PostgreSQL'],
      ['(a) Ed25519 verify, node:crypto, cached keys', fmt(verifyRate), '(same, CPU only)'],
      [
        '    the same, again just before (c)',
        fmt(sqlite.verifyBeforeIngest),
        fmt(pgFigures?.verifyBeforeIngest),
      ],
      ['    validateBlock (decode+CID+canonical+verify)', fmt(validateRate), '(same, CPU only)'],
      ['(b) raw insert, batches of 500', fmt(sqlite.rawInsert), fmt(pgFigures?.rawInsert)],
      ['    raw point read, one at a time', fmt(sqlite.rawGet), fmt(pgFigures?.rawGet)],
      [`    raw point read, ${IN_FLIGHT} in flight`, '-', fmt(pgFigures?.rawGetParallel)],
      [
        `(c) ICN validated ingest, putMany of ${BATCH}, ${PIPELINE} in flight`,
        fmt(sqlite.ingest),
        fmt(pgFigures?.ingest),
      ],
      ['    the same, all on the calling thread', fmt(sqlite.ingestInline), '-'],
      ['(d) ICN store.get, one at a time', fmt(sqlite.get), fmt(pgFigures?.get)],
      [`    ICN store.get, ${IN_FLIGHT} in flight`, '-', fmt(pgFigures?.getParallel)],
    ])
    out()
    printTable([
      ['ratio', 'SQLite', 'PostgreSQL'],
      [
        'ingest / verify just before it',
        ratio(sqlite.ingestOverVerify, 0.7),
        ratio(pgFigures?.ingestOverVerify, 0.5),
      ],
      ['ingest / raw insert', ratio(sqlite.ingestOverRawInsert), ratio(pgFigures?.ingestOverRawInsert)],
      [
        'ingest on the calling thread / verify',
        ratio(
          sqlite.ingestInline
            ? sqlite.ingestInline.perSecond / sqlite.verifyBeforeIngest.perSecond
            : undefined,
        ),
        '-',
      ],
    ])
    if (!pgFigures) out(`\nPostgreSQL skipped: ${(postgres as { skipped: string }).skipped}`)
  }
  if (!pgFigures && values['require-pg']) {
    process.stderr.write('PostgreSQL was required (--require-pg) but skipped\n')
    return 1
  }
  return 0
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exitCode = 1
  },
)
