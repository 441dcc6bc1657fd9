/**
 * Network benchmark: a 10-node ICN devnet next to 10 plain libp2p processes (default gossipsub, no ICN logic)
 * started in the same run, on this machine. Prints:
 *  - block propagation latency, writer → last of the other nodes (p50, p99), at 50 blocks/s from varying
 *    writers, against the baseline's publish → last delivery at the same rate and size;
 *  - the highest rate (of a sweep) each sustains with p99 under 1 s;
 *  - catch-up throughput of a node that missed 10,000 blocks, against this machine's validated-ingest rate
 *    (SQLite, worker verifier, as the node runs it) measured in the same run;
 *  - time for a fresh devnet to be fully connected, next to the baseline's.
 * See bench/README.md.
 *
 *   npm run bench:net [-- --nodes 10 --count 1000 --rate 50 --sweep 50,100,200,400 --catchup 10000 --json]
 */
import '../src/polyfill.js'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type Block, chainId, createSignedBlock, SqliteBlockStore } from '../src/dag/index.js'
import { Devnet, type DevnetNodeStatus } from '../src/devnet/index.js'
import { Signer, WorkerVerifier } from '../src/identity/index.js'
import { followEvents } from './events.js'
import { type Summary, startBaseline, summarize } from './net-baseline.js'

const { values: args } = parseArgs({
  options: {
    nodes: { type: 'string', default: '10' },
    count: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '50' },
    sweep: { type: 'string', default: '50,100,200,400' },
    'sweep-count': { type: 'string', default: '400' },
    catchup: { type: 'string', default: '10000' },
    'connect-runs': { type: 'string', default: '3' },
    'connect-only': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
})
const NODES = Number(args.nodes)
const COUNT = Number(args.count)
const RATE = Number(args.rate)
const SWEEP = args.sweep.split(',').map(Number)
const SWEEP_COUNT = Number(args['sweep-count'])
const CATCHUP = Number(args.catchup)
/** Start-ups of each kind timed for the time-to-connected figure (medians), after the ones the run needs anyway. */
const CONNECT_RUNS = Number(args['connect-runs'])
/** Block payload: a value of about this many bytes, so the signed block is about 1.3 KB like the baseline's. */
const VALUE_BYTES = 1100
const WARMUP = 20
/** Paced blocks written before any measurement (see warmUp). */
const WARMUP_BLOCKS = 2_000
const LOSS_WINDOW_MS = 5_000

function log(line: string): void {
  process.stderr.write(`${line}\n`)
}

function wall(): number {
  return performance.timeOrigin + performance.now()
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ---- ICN devnet side ----------------------------------------------------------------------------------------

interface Arrival {
  node: number
  at: number
}

/** Follows every node's /v1/events and records, per block CID, when each node stored it (node-side clock). */
class EventTap {
  readonly arrivals = new Map<string, Arrival[]>()
  private readonly controller = new AbortController()
  private readonly ready: Promise<void>[] = []

  constructor(nodes: DevnetNodeStatus[]) {
    for (const [i, n] of nodes.entries()) this.ready.push(this.follow(n, i))
  }

  async started(): Promise<void> {
    await Promise.all(this.ready)
  }

  private follow(node: DevnetNodeStatus, index: number): Promise<void> {
    return followEvents(node, this.controller.signal, (ev) => {
      if (ev.type !== 'block' || ev.kind !== 'signed' || !ev.cid) return
      const list = this.arrivals.get(ev.cid) ?? []
      if (list.length === 0) this.arrivals.set(ev.cid, list)
      list.push({ node: index, at: ev.at })
    })
  }

  close(): void {
    this.controller.abort()
  }
}

async function putValue(node: DevnetNodeStatus, value: unknown): Promise<string> {
  const res = await fetch(`${node.apiUrl}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${node.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value }),
  })
  if (res.status !== 201) throw new Error(`${node.name}: HTTP ${res.status} ${await res.text()}`)
  return ((await res.json()) as { cid: string }).cid
}

/**
 * Warm the nodes up as the baseline does (bench/net-baseline.ts): until V8 has optimised the hot paths, a node
 * needs about three times the CPU per message. `count` blocks, at most 8 in flight, each next one written when
 * an earlier one is on every node, so cold nodes are never overloaded.
 */
async function warmUp(nodes: DevnetNodeStatus[], tap: EventTap, count: number): Promise<void> {
  const pad = 'x'.repeat(VALUE_BYTES)
  let next = 0
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < count) {
        const i = next++
        const cid = await putValue(nodes[i % nodes.length]!, { warmup: i, pad })
        const deadline = wall() + 10_000
        while ((tap.arrivals.get(cid)?.length ?? 0) < nodes.length && wall() < deadline) await sleep(2)
      }
    }),
  )
}

interface IcnRun {
  summary: Summary
  /** From just before the HTTP write to the last other node (includes HTTP, signing, storing on the writer). */
  endToEnd: Summary
  lost: number
  achievedRate: number
}

/** Write `count` blocks at `rate` per second, round-robin over the nodes (open loop: writes do not wait). */
async function icnRun(
  nodes: DevnetNodeStatus[],
  tap: EventTap,
  rate: number,
  count: number,
): Promise<IcnRun> {
  const pad = 'x'.repeat(VALUE_BYTES)
  const total = count + WARMUP
  const written: { cid?: string; writer: number; sentAt: number }[] = []
  const pending: Promise<void>[] = []
  const start = wall() + 50
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate
    const wait = due - wall()
    if (wait > 1) await sleep(wait)
    const writer = i % nodes.length
    const entry: { cid?: string; writer: number; sentAt: number } = { writer, sentAt: wall() }
    written.push(entry)
    pending.push(
      putValue(nodes[writer]!, { i, pad }).then(
        (cid) => {
          entry.cid = cid
        },
        (err: unknown) => log(`write ${i} failed: ${(err as Error).message}`),
      ),
    )
  }
  const lastSent = wall()
  await Promise.all(pending)
  const measured = written.slice(WARMUP)
  const achievedRate =
    (measured.length - 1) / ((measured[measured.length - 1]!.sentAt - measured[0]!.sentAt) / 1000)
  const deadline = wall() + LOSS_WINDOW_MS
  const everywhere = (cid?: string) =>
    cid !== undefined && (tap.arrivals.get(cid)?.length ?? 0) >= nodes.length
  while (wall() < deadline && !measured.every((m) => everywhere(m.cid))) await sleep(50)
  const latencies: number[] = []
  const e2e: number[] = []
  let lost = 0
  for (const m of measured) {
    const arr = m.cid ? tap.arrivals.get(m.cid) : undefined
    if (!arr || arr.length < nodes.length) {
      lost++
      continue
    }
    const own = arr.find((a) => a.node === m.writer)
    const last = Math.max(...arr.filter((a) => a.node !== m.writer).map((a) => a.at))
    if (own) latencies.push(last - own.at)
    e2e.push(last - m.sentAt)
  }
  void lastSent
  return { summary: summarize(latencies), endToEnd: summarize(e2e), lost, achievedRate }
}

/**
 * Kill the last node, write `blocks` blocks on the others, restart it and time its catch-up. The node logs each
 * chain it fetched (`chain fetched`: blocks, start, duration); the rate is their blocks over the span from the
 * first fetch's start to the last one's end, so process start-up and connecting are not counted in it (they are
 * reported apart, as the time from restart to caught up).
 */
async function catchUp(
  devnet: Devnet,
  blocks: number,
): Promise<{ blocks: number; seconds: number; perSecond: number; restartToCaughtUpMs: number }> {
  const status = await devnet.status()
  const victim = status.nodes[status.nodes.length - 1]!
  const writers = status.nodes.slice(0, -1)
  await devnet.kill(victim.name)
  log(`  ${victim.name} killed; writing ${blocks} blocks on the other ${writers.length} nodes ...`)
  const pad = 'x'.repeat(VALUE_BYTES)
  let next = 0
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < blocks) {
        const i = next++
        await putValue(writers[i % writers.length]!, { catchup: i, pad })
      }
    }),
  )
  // Every other node must hold everything before the clock starts.
  const target = await storedBlocks(writers[0]!)
  for (const w of writers) while ((await storedBlocks(w)) < target) await sleep(100)
  log(`  written (${target} blocks on each live node); restarting ${victim.name} ...`)
  const restartAt = Date.now()
  const back = await devnet.restart(victim.name)
  while ((await storedBlocks(back)) < target) {
    if (Date.now() - restartAt > 300_000) throw new Error('catch-up did not finish in 5 minutes')
    await sleep(20)
  }
  const restartToCaughtUpMs = Date.now() - restartAt
  const fetches = (await readFile(join(back.dataDir, 'node.log'), 'utf8'))
    .split('\n')
    .filter((l) => l.includes('"chain fetched"'))
    .map((l) => JSON.parse(l) as { fetched: number; started: number; ms: number })
    .filter((f) => f.started >= restartAt)
  const fetched = fetches.reduce((n, f) => n + f.fetched, 0)
  const first = Math.min(...fetches.map((f) => f.started))
  const last = Math.max(...fetches.map((f) => f.started + f.ms))
  const seconds = (last - first) / 1000
  return { blocks: fetched, seconds, perSecond: fetched / seconds, restartToCaughtUpMs }
}

async function storedBlocks(node: DevnetNodeStatus): Promise<number> {
  const res = await fetch(`${node.apiUrl}/v1/dag/stats`)
  return ((await res.json()) as { blocks: number }).blocks
}

/** This machine's validated-ingest rate as a node runs it: SQLite, worker verifier, 2 batches of 500 in flight. */
async function ingestRate(blocks: number): Promise<number> {
  const dir = await mkdtemp(join(os.tmpdir(), 'icn-bench-ingest-'))
  const verifier = new WorkerVerifier()
  const store = new SqliteBlockStore({ path: join(dir, 'store.sqlite') }, { verifier })
  try {
    await store.open()
    const signer = Signer.generate()
    const chain = chainId(signer.did, 'node')
    const pad = 'x'.repeat(VALUE_BYTES)
    const all: Block[] = []
    let prev: Block | null = null
    for (let seq = 0; seq < blocks; seq++) {
      const b = createSignedBlock(signer, {
        type: 'icn.value/v1',
        chain,
        seq,
        prev: prev?.cid ?? null,
        ts: Date.now(),
        body: { seq, pad },
      })
      // A copy, as a synced block is: the store does not verify again the very bytes this process signed, and
      // this baseline is validated ingest (every signature checked).
      prev = { cid: b.cid, bytes: new Uint8Array(b.bytes) }
      all.push(prev)
    }
    const t0 = wall()
    const inFlight: Promise<unknown>[] = []
    for (let i = 0; i < all.length; i += 500) {
      inFlight.push(store.putMany(all.slice(i, i + 500), { source: 'sync' }))
      if (inFlight.length >= 2) await inFlight.shift()
    }
    await Promise.all(inFlight)
    return blocks / ((wall() - t0) / 1000)
  } finally {
    await store.close()
    await verifier.close()
    await rm(dir, { recursive: true, force: true })
  }
}

// ---- time to connected -------------------------------------------------------------------------------------

interface ConnectTimes {
  /** Plain libp2p, each process dialing 3 others (ms). */
  baseline: number[]
  /** Plain libp2p, the devnet's topology: every process dialing all before it (ms). */
  fullMesh: number[]
  /** `Devnet.up` in a fresh folder: creating it, starting every process, until all are ready and connected (ms). */
  devnet: number[]
}

/**
 * Times `runs` start-ups of each kind, interleaved (baseline, full-mesh baseline, devnet, then again), so that
 * a change in the machine's load falls on all three alike; the figures are their medians.
 */
async function connectTimes(runs: number): Promise<ConnectTimes> {
  const out: ConnectTimes = { baseline: [], fullMesh: [], devnet: [] }
  for (let i = 0; i < runs; i++) {
    const b = await startBaseline({ nodes: NODES, warmupMessages: 0 })
    out.baseline.push(b.connectedMs)
    await b.stop()
    const f = await startBaseline({ nodes: NODES, dialsPerNode: NODES - 1, warmupMessages: 0 })
    out.fullMesh.push(f.connectedMs)
    await f.stop()
    const dir = await mkdtemp(join(os.tmpdir(), 'icn-bench-net-up-'))
    try {
      const t0 = wall()
      const devnet = await Devnet.up({ dir, nodes: NODES, timeoutMs: 120_000 })
      out.devnet.push(wall() - t0)
      await devnet.down({ clean: true })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
    const s = (ms: number | undefined) => `${((ms ?? Number.NaN) / 1000).toFixed(2)} s`
    log(
      `  start-up ${i + 1}/${runs}: baseline ${s(out.baseline[i])}, full-mesh baseline ${s(out.fullMesh[i])}, ` +
        `devnet ${s(out.devnet[i])}`,
    )
  }
  return out
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

function connectRows(t: ConnectTimes): string[][] {
  const sec = (ms: number) => (ms / 1000).toFixed(2)
  const [d, b, f] = [median(t.devnet), median(t.baseline), median(t.fullMesh)]
  return [
    [
      `connected, median of ${t.devnet.length} (s)`,
      sec(d),
      sec(b),
      `${(d / b).toFixed(2)} (target <= 1.5; devnet: full mesh, baseline: 3 dials each)`,
    ],
    [`connected, full mesh on both, median of ${t.devnet.length} (s)`, sec(d), sec(f), (d / f).toFixed(2)],
  ]
}

function printRows(rows: string[][]): void {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  process.stdout.write(`\n${rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ')).join('\n')}\n`)
}

// ---- main ---------------------------------------------------------------------------------------------------

function fmt(s: Summary): string {
  return `p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms (n=${s.n})`
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = { nodes: NODES, rate: RATE, count: COUNT, cores: os.cpus().length }
  log(
    `time to connected: ${CONNECT_RUNS} start-ups each of ${NODES} plain libp2p processes and a ${NODES}-node devnet ...`,
  )
  const connect = await connectTimes(CONNECT_RUNS)
  out.connect = connect
  if (args['connect-only']) {
    const rows = [['', 'icn devnet', 'plain libp2p', 'ratio / target'], ...connectRows(connect)]
    out.summary = rows
    if (args.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
    else printRows(rows)
    return
  }

  log(`baseline: ${NODES} plain libp2p processes ...`)
  const baseline = await startBaseline({ nodes: NODES })
  const baseRun = await baseline.run({ rate: RATE, count: COUNT, bytes: 1300 })
  log(`  at ${RATE}/s: ${fmt(summarize(baseRun.latencies))}, lost ${baseRun.lost}`)
  const baseSweep: { rate: number; p50: number; p99: number; lost: number }[] = []
  for (const rate of SWEEP) {
    const r = await baseline.run({ rate, count: SWEEP_COUNT, bytes: 1300 })
    const s = summarize(r.latencies)
    baseSweep.push({ rate, p50: s.p50, p99: s.p99, lost: r.lost })
    log(`  sweep ${rate}/s: ${fmt(s)}, lost ${r.lost}`)
  }
  out.baseline = {
    connectedMs: baseline.connectedMs,
    latency: summarize(baseRun.latencies),
    lost: baseRun.lost,
    sweep: baseSweep,
  }
  await baseline.stop()
  const dir = await mkdtemp(join(os.tmpdir(), 'icn-bench-net-'))
  log(`icn devnet: ${NODES} nodes in ${dir} ...`)
  const t0 = wall()
  const devnet = await Devnet.up({ dir, nodes: NODES, timeoutMs: 120_000 })
  const connectedMs = wall() - t0
  try {
    const nodes = (await devnet.status()).nodes
    log(`  fully connected after ${(connectedMs / 1000).toFixed(1)} s`)
    await sleep(2_000) // let the gossip meshes settle (a heartbeat or two), as the baseline does
    const tap = new EventTap(nodes)
    await tap.started()
    // Each node's HTTP path sees only 1/N of the writes, so it takes more blocks than the baseline's 500
    // messages before every node runs optimised code (measured: with 500, the first run at 50/s was the worst).
    log(`  warming up (${WARMUP_BLOCKS} blocks, paced) ...`)
    await warmUp(nodes, tap, WARMUP_BLOCKS)
    const icn = await icnRun(nodes, tap, RATE, COUNT)
    log(`  at ${RATE}/s: ${fmt(icn.summary)}, lost ${icn.lost}; HTTP write → last node ${fmt(icn.endToEnd)}`)
    const icnSweep: { rate: number; p50: number; p99: number; lost: number; achieved: number }[] = []
    for (const rate of SWEEP) {
      const r = await icnRun(nodes, tap, rate, SWEEP_COUNT)
      icnSweep.push({ rate, p50: r.summary.p50, p99: r.summary.p99, lost: r.lost, achieved: r.achievedRate })
      log(`  sweep ${rate}/s (achieved ${r.achievedRate.toFixed(0)}/s): ${fmt(r.summary)}, lost ${r.lost}`)
    }
    tap.close()
    log(`catch-up of ${CATCHUP} blocks ...`)
    const cu = await catchUp(devnet, CATCHUP)
    log(
      `  ${cu.blocks} blocks fetched in ${cu.seconds.toFixed(2)} s: ${cu.perSecond.toFixed(0)} blocks/s ` +
        `(restart to caught up, process start included: ${(cu.restartToCaughtUpMs / 1000).toFixed(1)} s)`,
    )
    log('validated ingest on this machine (SQLite, worker verifier) ...')
    const ingest = await ingestRate(CATCHUP)
    log(`  ${ingest.toFixed(0)} blocks/s`)
    out.icn = {
      connectedMs,
      latency: icn.summary,
      endToEnd: icn.endToEnd,
      lost: icn.lost,
      sweep: icnSweep,
      catchUp: cu,
      ingestPerSecond: ingest,
    }
    const best = (rows: { rate: number; p99: number; lost: number }[]) =>
      rows.filter((r) => r.p99 < 1000 && r.lost === 0).reduce((m, r) => Math.max(m, r.rate), 0)
    const base = out.baseline as { latency: Summary }
    const summaryRows = [
      ['', 'icn devnet', 'plain libp2p', 'ratio / target'],
      [
        `p50 at ${RATE}/s (ms)`,
        icn.summary.p50.toFixed(1),
        base.latency.p50.toFixed(1),
        (icn.summary.p50 / base.latency.p50).toFixed(2),
      ],
      [
        `p99 at ${RATE}/s (ms)`,
        icn.summary.p99.toFixed(1),
        base.latency.p99.toFixed(1),
        `${(icn.summary.p99 / base.latency.p99).toFixed(2)} (target <= 3)`,
      ],
      ['highest swept rate with p99 < 1 s, no loss', String(best(icnSweep)), String(best(baseSweep)), ''],
      ...connectRows(connect),
      [
        'catch-up / ingest (blocks/s)',
        cu.perSecond.toFixed(0),
        ingest.toFixed(0),
        `${(cu.perSecond / ingest).toFixed(2)} (target >= 0.5)`,
      ],
    ]
    out.summary = summaryRows
    if (args.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
    else printRows(summaryRows)
  } finally {
    await devnet.down({ clean: true })
    await rm(dir, { recursive: true, force: true })
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(`bench:net failed: ${(err as Error).stack ?? err}`)
    process.exit(1)
  },
)
