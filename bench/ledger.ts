/**
 * Ledger benchmark. Prints, each next to a baseline measured in the same run:
 *  1. member-signed transfers/s through the HTTP API of one node (group commits, many concurrent clients, many
 *     member accounts), against bare `node:crypto` Ed25519 verify (cached KeyObject, one core) and the store's
 *     validated write rate of the same ledger blocks (SqliteBlockStore.putMany);
 *  2. on a devnet of real processes: POST answer → the transfer folded on every node (p50, p99), against a
 *     `dag put` answer → the block stored on every node, both read from every node's /v1/events;
 *  3. the projection runner's reindex rate over the ledger blocks of part 1, against validated ingest of the
 *     same blocks into a fresh store.
 * See bench/README.md.
 *
 *   npm run bench:ledger [-- --transfers 5000 --clients 64 --members 200 --nodes 10 --samples 200 --json]
 */
import '../src/polyfill.js'
import { createPublicKey, type KeyObject, randomBytes, verify } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import inspector from 'node:inspector'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import pg from 'pg'
import { openMember } from '../src/cli/member.js'
import { type Block, SqliteBlockStore } from '../src/dag/index.js'
import { Devnet, type DevnetNodeStatus } from '../src/devnet/index.js'
import {
  LEDGER_CHAIN,
  recordToJson,
  type SignedRecord,
  signedBytes,
  signRecord,
  type TransferFields,
} from '../src/economics/index.js'
import { createGenesis, writeGenesisFile } from '../src/federation/index.js'
import { domainBytes, memberTag, Signer, WorkerVerifier } from '../src/identity/index.js'
import { defaultOptions, IcnNode } from '../src/node/index.js'
import { silentLogger } from '../src/observability/index.js'
import { followEvents } from './events.js'

const { values: args } = parseArgs({
  options: {
    transfers: { type: 'string', default: '5000' },
    warmup: { type: 'string', default: '5000' },
    clients: { type: 'string', default: '64' },
    members: { type: 'string', default: '200' },
    nodes: { type: 'string', default: '10' },
    samples: { type: 'string', default: '200' },
    pg: { type: 'boolean', default: false },
    'no-pg': { type: 'boolean', default: false },
    'no-devnet': { type: 'boolean', default: false },
    /** Only part 2: the devnet's convergence (no single-node figures). */
    'convergence-only': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
})
const TRANSFERS = Number(args.transfers)
const WARMUP = Number(args.warmup)
const CLIENTS = Number(args.clients)
const MEMBERS = Number(args.members)
const NODES = Number(args.nodes)
const SAMPLES = Number(args.samples)
const CONVERGENCE_WARMUP = 10
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const DEFAULT_PG_URL = 'postgres://postgres@127.0.0.1:5432/test'
const TARGET_THROUGHPUT = 0.3
const TARGET_CONVERGENCE = 1.5
const INGEST_BATCH = 500

function log(line: string): void {
  process.stderr.write(`${line}\n`)
}

function wall(): number {
  return performance.timeOrigin + performance.now()
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * CPU time used so far: the whole process (every thread), and the main thread alone where Linux tells it
 * (`/proc/self/task/<pid>/stat`, in clock ticks of 10 ms). CPU time does not count the time a thread waits for a
 * core, so on a shared host it moves less than the rates do.
 */
function cpuTimes(): {
  processMs: number
  mainMs?: number
  minus(o: ReturnType<typeof cpuTimes>): { processMs: number; mainMs?: number }
} {
  const u = process.cpuUsage()
  let mainMs: number | undefined
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    mainMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
  } catch {
    mainMs = undefined
  }
  const processMs = (u.user + u.system) / 1000
  return {
    processMs,
    mainMs,
    minus: (o) => ({
      processMs: processMs - o.processMs,
      mainMs: mainMs === undefined || o.mainMs === undefined ? undefined : mainMs - o.mainMs,
    }),
  }
}

interface Rate {
  ops: number
  seconds: number
  perSecond: number
}

function rate(ops: number, ms: number): Rate {
  return { ops, seconds: ms / 1000, perSecond: ops / (ms / 1000) }
}

interface Summary {
  n: number
  p50: number
  p99: number
  max: number
}

function summarize(values: number[]): Summary {
  const s = [...values].sort((a, b) => a - b)
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? Number.NaN }
}

/**
 * With ICN_BENCH_PROFILE=DIR, a CPU profile of this thread (the node's) during `fn` only, written to
 * DIR/<name>.cpuprofile (open it in Chrome DevTools or VS Code).
 */
async function profiled<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const dir = process.env.ICN_BENCH_PROFILE
  if (!dir) return fn()
  const session = new inspector.Session()
  session.connect()
  const post = (method: string, params?: object) =>
    new Promise<unknown>((resolve, reject) =>
      session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
    )
  await post('Profiler.enable')
  await post('Profiler.start')
  try {
    return await fn()
  } finally {
    const { profile } = (await post('Profiler.stop')) as { profile: unknown }
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, `${name}.cpuprofile`), JSON.stringify(profile))
    session.disconnect()
  }
}

// ---- 1 and 3: one node --------------------------------------------------------------------------------------

interface Signed {
  /** The JSON body of POST /v1/ledger/transfers. */
  body: string
  /** For the verify baseline: the bytes the member's signature covers, the signature and the cached key. */
  message: Uint8Array
  sig: Uint8Array
  key: KeyObject
}

/** `count` transfers, round robin over the members, each to the next member, amount 1, all signed up front. */
function signTransfers(federation: string, members: Signer[], count: number, tag: string): Signed[] {
  const keys = members.map((m) =>
    createPublicKey({ key: Buffer.concat([SPKI_PREFIX, m.publicKey]), format: 'der', type: 'spki' }),
  )
  const expires = Date.now() + 3_000_000
  const out: Signed[] = []
  for (let i = 0; i < count; i++) {
    const k = i % members.length
    const fields: TransferFields = {
      kind: 'transfer',
      federation,
      member: members[k]!.did,
      to: members[(k + 1) % members.length]!.did,
      amount: 1,
      nonce: `${tag}-${i}-${randomBytes(6).toString('base64url')}`,
      expires,
    }
    const record = signRecord(members[k]!, fields) as SignedRecord<TransferFields>
    out.push({
      body: JSON.stringify(recordToJson(record)),
      message: domainBytes(memberTag('transfer'), signedBytes(fields)),
      sig: record.sig,
      key: keys[k]!,
    })
  }
  return out
}

function verifyBaseline(items: Signed[]): Rate {
  for (const s of items.slice(0, 500)) verify(null, s.message, s.key, s.sig)
  const t0 = performance.now()
  let ok = 0
  for (const s of items) if (verify(null, s.message, s.key, s.sig)) ok++
  if (ok !== items.length) throw new Error('baseline: a signature did not verify')
  return rate(items.length, performance.now() - t0)
}

async function postTransfer(apiUrl: string, body: string): Promise<{ cid: string; index: number }> {
  const res = await fetch(`${apiUrl}/v1/ledger/transfers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  })
  const text = await res.text()
  if (res.status !== 201)
    throw new Error(`POST /v1/ledger/transfers: HTTP ${res.status} ${text.slice(0, 300)}`)
  return JSON.parse(text) as { cid: string; index: number }
}

/**
 * One keep-alive HTTP/1.1 connection of the throughput clients: it writes a whole request, reads the whole answer
 * (status line, headers, a body of `Content-Length` bytes), and only then takes the next request, as a keep-alive
 * client does. It is this small rather than `fetch` or `node:http` because the clients share the machine's two
 * cores with the node, so what a client spends is taken from the node: against a trivial server on this machine,
 * client and server together spent 430 µs of CPU per request with `fetch`, 76 µs with `node:http` and 33 µs with
 * this (2,700, 14,000–20,000 and 50,000 requests/s).
 */
class Connection {
  private readonly socket: net.Socket
  private buffered?: Buffer
  private waiting?: { resolve(answer: { status: number; body: string }): void; reject(err: Error): void }
  private failure?: Error

  constructor(url: URL) {
    this.socket = net.connect({ host: url.hostname, port: Number(url.port), noDelay: true })
    this.socket.on('data', (chunk: Buffer) => this.read(chunk))
    const fail = (err: Error) => {
      this.failure = err
      this.waiting?.reject(err)
      this.waiting = undefined
    }
    this.socket.on('error', fail)
    this.socket.on('close', () => fail(new Error('the node closed the connection')))
  }

  /** Send `request` (a whole HTTP request) and resolve with the answer's status and body. */
  send(request: Buffer): Promise<{ status: number; body: string }> {
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject }
      this.socket.write(request)
    })
  }

  close(): void {
    this.socket.destroy()
  }

  private read(chunk: Buffer): void {
    const buf = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk
    this.buffered = buf
    const end = buf.indexOf('\r\n\r\n')
    if (end < 0 || !this.waiting) return
    const head = buf.toString('latin1', 0, end)
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)
    const waiting = this.waiting
    if (!length || !head.startsWith('HTTP/1.1 ')) {
      waiting.reject(new Error(`not an HTTP/1.1 answer with a Content-Length: ${head.slice(0, 200)}`))
      return
    }
    const bodyEnd = end + 4 + Number(length[1])
    if (buf.length < bodyEnd) return
    this.buffered = undefined
    this.waiting = undefined
    if (buf.length > bodyEnd) waiting.reject(new Error('bytes after the answer'))
    else waiting.resolve({ status: Number(head.slice(9, 12)), body: buf.toString('utf8', end + 4, bodyEnd) })
  }
}

/** The whole HTTP request of a transfer, built up front like the signatures. */
function transferRequest(url: URL, body: string): Buffer {
  return Buffer.from(
    `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
}

/**
 * `requests` through the API over `connections` (one request in flight on each); each answer must be a 201 with a
 * receipt (its JSON parsed). Resolves with the time it took, in ms.
 */
async function post(connections: Connection[], requests: Buffer[]): Promise<number> {
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    connections.map(async (c) => {
      while (next < requests.length) {
        const answer = await c.send(requests[next++]!)
        if (answer.status !== 201)
          throw new Error(`POST /v1/ledger/transfers: HTTP ${answer.status} ${answer.body.slice(0, 300)}`)
        if (typeof (JSON.parse(answer.body) as { cid?: unknown }).cid !== 'string')
          throw new Error(`POST /v1/ledger/transfers: no receipt in ${answer.body.slice(0, 300)}`)
      }
    }),
  )
  return performance.now() - t0
}

/**
 * The clients, on a worker thread of their own, so the node's thread does only the node's work (HTTP clients in
 * the node's own event loop would cost it about as much CPU as the server side of each request). One worker and
 * one set of connections serve the warm-up and the measured run, so the warm-up warms the clients too (a fresh
 * worker's code starts out interpreted, and its connections new).
 */
class Clients {
  private constructor(private readonly worker: Worker) {}

  static start(apiUrl: string, clients: number): Clients {
    return new Clients(new Worker(new URL(import.meta.url), { workerData: { apiUrl, clients } }))
  }

  /** Post `items`; `onStart` is called just before the first request goes (the requests are built by then). */
  run(items: Signed[], onStart?: () => void): Promise<Rate> {
    const worker = this.worker
    return new Promise<Rate>((resolve, reject) => {
      const onMessage = (m: { ready?: true; ms?: number; error?: string }) => {
        if (m.ready) {
          onStart?.()
          worker.postMessage('go')
          return
        }
        worker.off('message', onMessage)
        worker.off('error', reject)
        if (m.error === undefined) resolve(rate(items.length, m.ms!))
        else reject(new Error(m.error))
      }
      worker.on('message', onMessage)
      worker.once('error', reject)
      worker.postMessage({ bodies: items.map((i) => i.body) })
    })
  }

  async close(): Promise<void> {
    await this.worker.terminate()
  }
}

interface NodeFigures {
  store: 'sqlite' | 'postgres'
  transfers: Rate
  verify: Rate
  transfersOverVerify: number
  /**
   * CPU time per measured transfer: the node's thread (Linux only), and the whole process (the clients' and the
   * verifier's threads included), in µs. Unlike the rates, CPU time leaves out waiting for a busy host's cores.
   */
  cpuPerTransfer: { nodeThreadUs?: number; processUs: number }
  /** The node's event-loop utilization during the measured transfers (0–1). */
  eventLoopBusy: number
  blocks: number
  opsPerBlock: number
  /** The same ledger blocks put into a fresh SQLite store (worker verifier, as a node runs it). */
  ingest: Rate
  reindex: Rate
  reindexOverIngest: number
}

async function createPgDatabase(): Promise<{ url: string; drop(): Promise<void> } | { skipped: string }> {
  const adminUrl = process.env.ICN_BENCH_PG_URL || process.env.ICN_TEST_PG_URL || DEFAULT_PG_URL
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 })
  try {
    await admin.connect()
  } catch (err) {
    return { skipped: `cannot connect to PostgreSQL: ${(err as Error).message}` }
  }
  const name = `icn_bench_ledger_${process.pid}_${Date.now()}`
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } catch (err) {
    await admin.end()
    return { skipped: `cannot create a database: ${(err as Error).message}` }
  }
  const u = new URL(adminUrl)
  u.pathname = `/${name}`
  return {
    url: u.toString(),
    drop: async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {})
      await admin.end()
    },
  }
}

async function nodeBench(kind: 'sqlite' | 'postgres'): Promise<NodeFigures | { skipped: string }> {
  let database: { url: string; drop(): Promise<void> } | undefined
  if (kind === 'postgres') {
    const d = await createPgDatabase()
    if ('skipped' in d) return d
    database = d
  }
  const dir = await mkdtemp(join(os.tmpdir(), 'icn-bench-ledger-'))
  const nodeSigner = Signer.generate()
  const members = Array.from({ length: MEMBERS }, () => Signer.generate())
  const federation = createGenesis(nodeSigner, {
    name: 'bench-ledger',
    members: members.map((m) => m.did),
    nodes: [nodeSigner.did],
    homes: Object.fromEntries(members.map((m) => [m.did, nodeSigner.did])),
    parameters: { memberAllocation: 1_000_000, manaCap: 1_000_000 },
    ts: Date.now() - 1_000,
  })
  const genesis = join(dir, 'genesis.car')
  await writeGenesisFile(genesis, federation)
  const node = await IcnNode.create(
    {
      ...defaultOptions,
      ...(database ? { store: 'postgres' as const, pgUrl: database.url } : {}),
      dataDir: join(dir, 'node'),
      apiListen: '127.0.0.1:0',
      genesis,
      p2pListen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: [],
      logLevel: 'silent',
      // A reindex is one transaction; on a busy host PostgreSQL may take longer than the default 10 s for it.
      storeTimeoutMs: 120_000,
    },
    { signer: nodeSigner, apiKey: 'bench-ledger-api-key-0123456789', logger: silentLogger() },
  )
  let clients: Clients | undefined
  try {
    await node.start()
    log(`  signing ${WARMUP + TRANSFERS} transfers of ${MEMBERS} members ...`)
    const warm = signTransfers(federation.id, members, WARMUP, 'w')
    const items = signTransfers(federation.id, members, TRANSFERS, 'm')
    log(`  warm-up: ${WARMUP} transfers ...`)
    clients = Clients.start(node.apiUrl, CLIENTS)
    await clients.run(warm)
    const verifyRate = verifyBaseline(items)
    log(`  bare Ed25519 verify: ${verifyRate.perSecond.toFixed(0)}/s`)
    let cpu0 = cpuTimes()
    let elu0 = performance.eventLoopUtilization()
    const transfers = await profiled(`transfers-${kind}`, () =>
      clients!.run(items, () => {
        cpu0 = cpuTimes()
        elu0 = performance.eventLoopUtilization()
      }),
    )
    const cpu = cpuTimes().minus(cpu0)
    const busy = performance.eventLoopUtilization(elu0).utilization
    log(`  ${TRANSFERS} transfers, ${CLIENTS} clients: ${transfers.perSecond.toFixed(0)}/s`)
    const cpuPerTransfer = {
      nodeThreadUs: cpu.mainMs === undefined ? undefined : (cpu.mainMs * 1000) / TRANSFERS,
      processUs: (cpu.processMs * 1000) / TRANSFERS,
    }
    log(
      `  CPU per transfer: node's thread ${cpuPerTransfer.nodeThreadUs?.toFixed(0) ?? 'n/a'} µs, whole process ${cpuPerTransfer.processUs.toFixed(0)} µs (clients and verifier threads included); node's event loop busy ${(busy * 100).toFixed(0)}% of the time`,
    )

    // The ledger blocks written (warm-up included), for the ingest and reindex figures.
    const chain = `${node.did}/${LEDGER_CHAIN}`
    const head = await node.store.chainHead(chain)
    const blocks: Block[] = []
    for (let from = 0; head && from <= head.seq; ) {
      const page = await node.store.chainRange(chain, from, 1000)
      if (page.length === 0) break
      blocks.push(...page)
      from += page.length
    }
    const ops = WARMUP + TRANSFERS
    log(`  ${blocks.length} ledger blocks (${(ops / blocks.length).toFixed(1)} transfers per block)`)
    const ingest = await ingestRate(blocks)
    log(`  validated ingest of those blocks: ${ingest.perSecond.toFixed(0)} blocks/s`)
    // The node remembers the records its API verified (VerifiedRecords), and its fold, this refold included, would
    // find them there; forgotten first, so the reindex verifies every member signature, as `icn dag reindex` does.
    node.verifiedRecords.clear()
    const r = await profiled(`reindex-${kind}`, () => node.state.reindex())
    const reindex = rate(r.blocks, r.ms)
    log(`  reindex: ${r.blocks} blocks in ${r.ms.toFixed(0)} ms: ${reindex.perSecond.toFixed(0)} blocks/s`)
    return {
      store: kind,
      transfers,
      verify: verifyRate,
      transfersOverVerify: transfers.perSecond / verifyRate.perSecond,
      cpuPerTransfer,
      eventLoopBusy: busy,
      blocks: blocks.length,
      opsPerBlock: ops / blocks.length,
      ingest,
      reindex,
      reindexOverIngest: reindex.perSecond / ingest.perSecond,
    }
  } finally {
    await clients?.close()
    await node.stop()
    await database?.drop()
    await rm(dir, { recursive: true, force: true })
  }
}

/** Validated ingest as a node runs it: a fresh SQLite store, worker verifier, two batches of 500 in flight. */
async function ingestRate(blocks: Block[]): Promise<Rate> {
  const dir = await mkdtemp(join(os.tmpdir(), 'icn-bench-ledger-ingest-'))
  const verifier = new WorkerVerifier()
  const store = new SqliteBlockStore({ path: join(dir, 'store.sqlite') }, { verifier })
  try {
    await store.open()
    const t0 = performance.now()
    const inFlight: Promise<unknown>[] = []
    for (let i = 0; i < blocks.length; i += INGEST_BATCH) {
      inFlight.push(
        store.putMany(blocks.slice(i, i + INGEST_BATCH), { source: 'sync' }).then((results) => {
          if (results.some((x) => x.status !== 'stored')) throw new Error('ingest: a block was not stored')
        }),
      )
      if (inFlight.length >= 2) await inFlight.shift()
    }
    await Promise.all(inFlight)
    return rate(blocks.length, performance.now() - t0)
  } finally {
    await store.close()
    await verifier.close()
    await rm(dir, { recursive: true, force: true })
  }
}

// ---- 2: convergence on a devnet -----------------------------------------------------------------------------

/**
 * Follows every node's /v1/events: when each node stored a block (by CID) and folded a transfer (CID#index).
 * Waiting for an arrival count is event-driven (no polling): a bench process waking every millisecond would take
 * cores from the ten node processes it measures, and the times are the nodes' own (`at`) anyway.
 */
class EventTap {
  readonly blocks = new Map<string, number[]>()
  readonly transfers = new Map<string, number[]>()
  /** The same arrivals by node: key -> node index -> time. */
  readonly blocksAt = new Map<string, Map<number, number>>()
  readonly transfersAt = new Map<string, Map<number, number>>()
  private readonly controller = new AbortController()
  private readonly waiting = new Map<Map<string, number[]>, Map<string, { n: number; done: () => void }>>()

  async follow(nodes: DevnetNodeStatus[]): Promise<void> {
    await Promise.all(nodes.map((n, i) => this.one(n, i)))
  }

  private one(node: DevnetNodeStatus, index: number): Promise<void> {
    return followEvents(node, this.controller.signal, (ev) => {
      if (ev.type === 'block' && ev.kind === 'signed' && ev.cid) {
        at(this.blocksAt, ev.cid, index, ev.at)
        this.arrived(this.blocks, ev.cid, ev.at)
      } else if (ev.type === 'ledger:transfer' && ev.cid) {
        at(this.transfersAt, `${ev.cid}#${ev.index}`, index, ev.at)
        this.arrived(this.transfers, `${ev.cid}#${ev.index}`, ev.at)
      }
    })
  }

  private arrived(map: Map<string, number[]>, key: string, t: number): void {
    push(map, key, t)
    const w = this.waiting.get(map)?.get(key)
    if (w && (map.get(key)?.length ?? 0) >= w.n) w.done()
  }

  /** Resolves with the latest arrival time once `key` arrived on `n` nodes; fails after 30 s. */
  everywhere(map: Map<string, number[]>, key: string, n: number): Promise<number> {
    const latest = (): number => Math.max(...map.get(key)!)
    if ((map.get(key)?.length ?? 0) >= n) return Promise.resolve(latest())
    let keys = this.waiting.get(map)
    if (!keys) {
      keys = new Map()
      this.waiting.set(map, keys)
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        keys?.delete(key)
        reject(new Error(`${key} reached ${map.get(key)?.length ?? 0} of ${n} nodes in 30 s`))
      }, 30_000)
      keys.set(key, {
        n,
        done: () => {
          clearTimeout(timer)
          keys.delete(key)
          resolve(latest())
        },
      })
    })
  }

  close(): void {
    this.controller.abort()
  }
}

function at(map: Map<string, Map<number, number>>, key: string, node: number, t: number): void {
  let m = map.get(key)
  if (!m) {
    m = new Map()
    map.set(key, m)
  }
  m.set(node, t)
}

function push(map: Map<string, number[]>, key: string, at: number): void {
  const list = map.get(key)
  if (list) list.push(at)
  else map.set(key, [at])
}

async function dagPut(node: DevnetNodeStatus, value: unknown): Promise<string> {
  const res = await fetch(`${node.apiUrl}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${node.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value }),
  })
  if (res.status !== 201) throw new Error(`${node.name}: HTTP ${res.status} ${await res.text()}`)
  return ((await res.json()) as { cid: string }).cid
}

interface Convergence {
  nodes: number
  connectedMs: number
  transfer: Summary
  block: Summary
  p50Ratio: number
  p99Ratio: number
}

/**
 * One transfer then one block at a time, alternating, each from the next node in turn: a transfer from the
 * member homed at node k to the member homed at node k+1, posted to node k; a `dag put` of a small value on
 * node k. Each latency: the client's time of the POST answer → the latest of the nodes' own event times.
 */
async function convergence(): Promise<Convergence> {
  const dir = await mkdtemp(join(os.tmpdir(), 'icn-bench-ledger-devnet-'))
  log(`devnet: ${NODES} nodes in ${dir} ...`)
  const t0 = wall()
  const devnet = await Devnet.up({ dir, nodes: NODES, timeoutMs: 120_000 })
  const connectedMs = wall() - t0
  const tap = new EventTap()
  try {
    const status = await devnet.status()
    const nodes = status.nodes
    log(`  connected after ${(connectedMs / 1000).toFixed(1)} s; opening the members ...`)
    const members = await Promise.all(
      nodes.map(async (n) => {
        if (!n.member) throw new Error(`${n.name} has no member (a devnet from before members?)`)
        return openMember(n.member.dir, { interactive: false })
      }),
    )
    await sleep(2_000) // let the gossip meshes settle, as bench/net.ts does
    await tap.follow(nodes)
    const transfer: number[] = []
    const block: number[] = []
    /** The transfer's ledger block: answer -> stored on every node. */
    const transferBlock: number[] = []
    /** Per transfer, the largest store -> fold delay of any node (its own clock both times). */
    const foldLag: number[] = []
    const total = CONVERGENCE_WARMUP + SAMPLES
    for (let i = 0; i < total; i++) {
      const k = i % nodes.length
      const from = members[k]!
      const to = members[(k + 1) % members.length]!
      const record = signRecord(from.signer, {
        kind: 'transfer',
        federation: status.federation,
        member: from.did,
        to: to.did,
        amount: 1,
        nonce: `conv-${i}-${randomBytes(6).toString('base64url')}`,
        expires: Date.now() + 600_000,
      })
      const answer = await postTransfer(nodes[k]!.apiUrl, JSON.stringify(recordToJson(record)))
      const answeredAt = wall()
      const folded = await tap.everywhere(tap.transfers, `${answer.cid}#${answer.index}`, nodes.length)
      const cid = await dagPut(nodes[k]!, { bench: 'ledger', i })
      const storedAt = wall()
      const stored = await tap.everywhere(tap.blocks, cid, nodes.length)
      if (i >= CONVERGENCE_WARMUP) {
        transfer.push(folded - answeredAt)
        block.push(stored - storedAt)
        // Where the transfer's time went: its ledger block stored on every node, then folded there.
        const storedOn = tap.blocksAt.get(answer.cid)
        const foldedOn = tap.transfersAt.get(`${answer.cid}#${answer.index}`)!
        if (storedOn && storedOn.size === nodes.length) {
          transferBlock.push(Math.max(...storedOn.values()) - answeredAt)
          foldLag.push(Math.max(...[...foldedOn].map(([n, t]) => t - storedOn.get(n)!)))
        }
      }
    }
    const t = summarize(transfer)
    const b = summarize(block)
    log(`  transfer answer → folded everywhere: p50 ${t.p50.toFixed(1)} ms, p99 ${t.p99.toFixed(1)} ms`)
    log(`  dag put answer → stored everywhere:  p50 ${b.p50.toFixed(1)} ms, p99 ${b.p99.toFixed(1)} ms`)
    if (transferBlock.length > 0) {
      const tb = summarize(transferBlock)
      const fl = summarize(foldLag)
      log(
        `  of the transfer's time: its block stored everywhere p50 ${tb.p50.toFixed(1)} ms, p99 ${tb.p99.toFixed(1)} ms; ` +
          `store → fold on the slowest node p50 ${fl.p50.toFixed(1)} ms, p99 ${fl.p99.toFixed(1)} ms`,
      )
    }
    return {
      nodes: nodes.length,
      connectedMs,
      transfer: t,
      block: b,
      p50Ratio: t.p50 / b.p50,
      p99Ratio: t.p99 / b.p99,
    }
  } finally {
    tap.close()
    await devnet.down({ clean: true })
    await rm(dir, { recursive: true, force: true })
  }
}

// ---- main ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const out: Record<string, unknown> = {
    cores: os.cpus().length,
    node: process.version,
    loadavg: os.loadavg().map((l) => Number(l.toFixed(2))),
    transfers: TRANSFERS,
    clients: CLIENTS,
    members: MEMBERS,
  }
  log(
    `bench:ledger on ${os.cpus().length} cores, Node ${process.version}, load ${os.loadavg()[0]!.toFixed(2)}`,
  )
  const figures: NodeFigures[] = []
  const skipped: Record<string, string> = {}
  if (!args['convergence-only']) {
    log('one node, SQLite ...')
    figures.push((await nodeBench('sqlite')) as NodeFigures)
  }
  if (!args['convergence-only'] && (args.pg || !args['no-pg'])) {
    log('one node, PostgreSQL ...')
    const p = await nodeBench('postgres')
    if ('skipped' in p) {
      log(`  skipped: ${p.skipped}`)
      if (args.pg) throw new Error(`PostgreSQL required (--pg): ${p.skipped}`)
      skipped.postgres = p.skipped
    } else figures.push(p)
  }
  out.node = figures
  if (Object.keys(skipped).length > 0) out.skipped = skipped
  const conv = args['no-devnet'] ? undefined : await convergence()
  if (conv) out.convergence = conv

  const rows: string[][] = [['', 'ledger', 'baseline', 'ratio / target']]
  for (const f of figures) {
    rows.push([
      `transfers/s over HTTP (${f.store}, ${CLIENTS} clients)`,
      f.transfers.perSecond.toFixed(0),
      `${f.verify.perSecond.toFixed(0)} (bare verify)`,
      `${f.transfersOverVerify.toFixed(2)} (target >= ${TARGET_THROUGHPUT}: ${f.transfersOverVerify >= TARGET_THROUGHPUT ? 'met' : 'NOT met'})`,
    ])
    rows.push([
      '  CPU per transfer: node thread, process',
      `${f.cpuPerTransfer.nodeThreadUs?.toFixed(0) ?? 'n/a'} µs, ${f.cpuPerTransfer.processUs.toFixed(0)} µs`,
      `${(1e6 / f.verify.perSecond).toFixed(0)} µs (one bare verify)`,
      '',
    ])
    rows.push([
      `  ledger blocks (${f.opsPerBlock.toFixed(1)} transfers each)`,
      `${(f.transfers.perSecond / f.opsPerBlock).toFixed(0)} blocks/s`,
      `${f.ingest.perSecond.toFixed(0)} blocks/s (store putMany)`,
      (f.transfers.perSecond / f.opsPerBlock / f.ingest.perSecond).toFixed(2),
    ])
    rows.push([
      `reindex (${f.store}, ${f.blocks} blocks)`,
      `${f.reindex.perSecond.toFixed(0)} blocks/s (${(f.reindex.perSecond * f.opsPerBlock).toFixed(0)} ops/s)`,
      `${f.ingest.perSecond.toFixed(0)} blocks/s (validated ingest)`,
      f.reindexOverIngest.toFixed(2),
    ])
  }
  if (conv) {
    rows.push([
      `convergence p50 (${conv.nodes} nodes, ms)`,
      conv.transfer.p50.toFixed(1),
      `${conv.block.p50.toFixed(1)} (block)`,
      conv.p50Ratio.toFixed(2),
    ])
    rows.push([
      `convergence p99 (${conv.nodes} nodes, ms)`,
      conv.transfer.p99.toFixed(1),
      `${conv.block.p99.toFixed(1)} (block)`,
      `${conv.p99Ratio.toFixed(2)} (target <= ${TARGET_CONVERGENCE}: ${conv.p99Ratio <= TARGET_CONVERGENCE && conv.p50Ratio <= TARGET_CONVERGENCE ? 'met' : 'NOT met'})`,
    ])
  }
  out.summary = rows
  if (args.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  else {
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
    process.stdout.write(`\n${rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ')).join('\n')}\n`)
  }
}

if (isMainThread)
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      log(`bench:ledger failed: ${(err as Error).stack ?? err}`)
      process.exit(1)
    },
  )
else {
  const { apiUrl, clients } = workerData as { apiUrl: string; clients: number }
  const url = new URL('/v1/ledger/transfers', apiUrl)
  const connections = Array.from({ length: clients }, () => new Connection(url))
  let requests: Buffer[] = []
  parentPort!.on('message', (m: { bodies: string[] } | 'go') => {
    if (m !== 'go') {
      requests = m.bodies.map((b) => transferRequest(url, b))
      parentPort!.postMessage({ ready: true })
      return
    }
    post(connections, requests).then(
      (ms) => parentPort!.postMessage({ ms }),
      (err: unknown) => parentPort!.postMessage({ error: String((err as Error).message ?? err) }),
    )
  })
}
