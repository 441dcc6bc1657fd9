/**
 * Network baseline: N plain libp2p processes on 127.0.0.1 (bench/net-peer.ts: TCP, Noise, Yamux, gossipsub with
 * default options, no ICN logic), measured for publish → delivered latency. Used by the network benchmark to
 * compare ICN against the bare stack under the same machine load, and runnable alone through
 * bench/net-baseline-main.ts.
 *
 * Times are `performance.timeOrigin + performance.now()` taken in the publishing and the receiving process
 * (comparable across processes on one host). A message's latency is from just before `publish()` in its
 * publisher to its arrival at the last of the other nodes.
 *
 * This module has no side effects on import: net-peer.ts imports its constants and IPC types.
 */
import { type ChildProcess, fork } from 'node:child_process'
import os from 'node:os'
import { fileURLToPath } from 'node:url'

/** The one gossipsub topic every node subscribes to. */
export const TOPIC = 'icn-bench/net-baseline/1'
/** Payload header: message id (uint32), publisher index (uint16), publish time (float64), all big-endian. */
export const HEADER_BYTES = 14
/** gossipsub's default Dlo: below this many mesh peers a node grafts more at each heartbeat. */
const GOSSIPSUB_DLO = 4
const READY_TIMEOUT_MS = 30_000
const SETTLE_TIMEOUT_MS = 5_000
const STATUS_TIMEOUT_MS = 10_000
const POLL_MS = 100
/** How long after the last send to wait for publish acknowledgements before giving up on them. */
const ACK_TIMEOUT_MS = 10_000
/** Receipts are batched every 50 ms in the peers: wait this much past the loss deadline for the last batch. */
const REPORT_SLACK_MS = 300
const STOP_KILL_MS = 5_000
/** Warm-up moves on from a message that has not reached every node after this long. */
const WARM_GIVE_UP_MS = 5_000

/** Wall-clock milliseconds comparable across processes on one host. */
export function wallClock(): number {
  return performance.timeOrigin + performance.now()
}

// ---- IPC messages ------------------------------------------------------------------------------------------

export interface DialTarget {
  peerId: string
  addr: string
}

export interface PeerStatus {
  index: number
  /** Open connections (all peers). */
  connections: number
  /** Distinct connected peers. */
  peers: number
  /** Peers in this node's gossipsub mesh for TOPIC. */
  meshPeers: number
  /** Known peers subscribed to TOPIC. */
  subscribers: number
  /** Every peer the parent asked this node to dial has an open connection. */
  dialsConnected: boolean
  rssBytes: number
  /** User + system CPU time of the process since it started. */
  cpuMicros: number
}

export type ParentToPeer =
  | { type: 'dial'; targets: DialTarget[] }
  | { type: 'status'; req: number }
  | { type: 'publish'; id: number; bytes: number }
  | { type: 'stop' }

export type PeerToParent =
  | { type: 'ready'; index: number; peerId: string; addr: string }
  | { type: 'status'; req: number; status: PeerStatus }
  /** `at`: wall clock just before `publish()` was called. */
  | { type: 'published'; id: number; at: number }
  | { type: 'publish-failed'; id: number; error: string }
  /** Receipts since the last report: `ids[i]` arrived at wall clock `at[i]`. */
  | { type: 'received'; ids: number[]; at: number[] }
  | { type: 'fatal'; error: string }

// ---- statistics ---------------------------------------------------------------------------------------------

/** Nearest-rank percentile (p in 0..100) of `values`; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return rank(sorted, p)
}

function rank(sorted: number[], p: number): number {
  const r = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, r - 1))]!
}

export interface Summary {
  n: number
  p50: number
  p90: number
  p99: number
  max: number
}

export function summarize(latencies: number[]): Summary {
  const sorted = [...latencies].sort((a, b) => a - b)
  if (sorted.length === 0) return { n: 0, p50: Number.NaN, p90: Number.NaN, p99: Number.NaN, max: Number.NaN }
  return {
    n: sorted.length,
    p50: rank(sorted, 50),
    p90: rank(sorted, 90),
    p99: rank(sorted, 99),
    max: sorted[sorted.length - 1]!,
  }
}

// ---- the baseline -------------------------------------------------------------------------------------------

export interface BaselineOptions {
  /** Node processes (default 10). */
  nodes?: number
  /** Each node dials this many of the nodes started just before it (default 3). */
  dialsPerNode?: number
  /**
   * Messages published once the mesh has settled, closed loop (see `warmupMs`), and never measured (default
   * 500): a cold node spends about three times the CPU per message of a warm one until V8 has optimised
   * gossipsub, Noise and Yamux, which takes a few hundred messages. 0 skips it.
   */
  warmupMessages?: number
  /** Payload bytes of the warm-up messages (default 1300). */
  warmupBytes?: number
}

export interface RunOptions {
  /** Messages offered per second, across all publishers. */
  rate: number
  /** Messages measured. */
  count: number
  /** Payload bytes per message (default 1300). */
  bytes?: number
  /** Messages published first at the same rate and not measured (default 20). */
  warmup?: number
  /** A message not at every other node this long after the last publish is lost (default 5000 ms). */
  lossWindowMs?: number
}

export interface RunResult {
  /** ms, publish → delivered at the last of the other nodes; one per message delivered everywhere. */
  latencies: number[]
  /** Measured messages not delivered to every other node in time, including failed publishes. */
  lost: number
  /** `publish()` calls that threw (e.g. no topic peers): counted in `lost` too. */
  publishFailed: number
  offeredRate: number
  /** Publishes per second actually made, from the publishers' own publish times (measured messages). */
  achievedRate: number
  /** Messages delivered everywhere per second, from the first measured publish to the last such delivery. */
  deliveredRate: number
  /** Total CPU of all nodes during the run (warmup and drain included) divided by messages published. */
  cpuMsPerMessage: number
  /** Connected peers of each node just before and just after the run. */
  peersBefore: number[]
  peersAfter: number[]
  /**
   * Cores kept busy during the run by everything else on the host (not the nodes, not this process), from the
   * OS's CPU counters: above ~0.2 the figures are skewed by other work.
   */
  otherCpuCores: number
  /** Node processes that exited during the run (their receipts are missing: messages lost). */
  peersExited: number
}

export interface Baseline {
  readonly nodes: number
  /** From spawning the first process to every node listening (process start and loading libp2p dominate). */
  readonly listeningMs: number
  /** From spawning the first process to every node having its dials connected and a mesh peer. */
  readonly connectedMs: number
  /**
   * From spawning the first process to every node's mesh holding at least min(its topic peers, Dlo = 4), the
   * level below which gossipsub grafts more; NaN if not seen within 5 s of `connectedMs`.
   */
  readonly meshSettledMs: number
  /** Time the start-up warm-up took (0 if none). */
  readonly warmupMs: number
  status(): Promise<PeerStatus[]>
  run(options: RunOptions): Promise<RunResult>
  stop(): Promise<void>
}

interface RunState {
  base: number
  total: number
  warmup: number
  publishAt: Float64Array
  /** 0: not acknowledged, 1: published, 2: publish failed. */
  ack: Uint8Array
  acks: number
  seen: Uint8Array
  receipts: Uint16Array
  lastAt: Float64Array
}

class Peer {
  readonly proc: ChildProcess
  peerId = ''
  addr = ''
  exited = false
  readonly exit: Promise<void>
  private readonly statusWaiters = new Map<number, (s: PeerStatus) => void>()
  private nextReq = 0

  constructor(
    readonly index: number,
    script: string,
    onMessage: (peer: Peer, msg: PeerToParent) => void,
  ) {
    this.proc = fork(script, [String(index)], {
      // The peers' stdout goes to our stderr so that `--json` output stays clean.
      stdio: ['ignore', 2, 'inherit', 'ipc'],
      execArgv: process.execArgv.filter((a) => !a.startsWith('--inspect')),
    })
    this.exit = new Promise((resolve) => {
      this.proc.once('exit', () => {
        this.exited = true
        resolve()
      })
    })
    this.proc.on('message', (m) => {
      const msg = m as PeerToParent
      if (msg.type === 'status') {
        this.statusWaiters.get(msg.req)?.(msg.status)
        this.statusWaiters.delete(msg.req)
      } else onMessage(this, msg)
    })
    // A send racing the child's exit must not crash the parent.
    this.proc.on('error', () => {})
  }

  send(msg: ParentToPeer): void {
    // A failed write (the child just exited) is seen through 'exit': ignore it here.
    if (!this.exited && this.proc.connected) this.proc.send(msg, undefined, {}, () => {})
  }

  status(): Promise<PeerStatus> {
    const req = this.nextReq++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.statusWaiters.delete(req)
        reject(new Error(`node ${this.index}: no status within ${STATUS_TIMEOUT_MS} ms`))
      }, STATUS_TIMEOUT_MS)
      this.statusWaiters.set(req, (s) => {
        clearTimeout(timer)
        resolve(s)
      })
      this.send({ type: 'status', req })
      if (this.exited) {
        clearTimeout(timer)
        reject(new Error(`node ${this.index} has exited`))
      }
    })
  }

  async stop(): Promise<void> {
    if (this.exited) return
    this.send({ type: 'stop' })
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), STOP_KILL_MS)
    await this.exit
    clearTimeout(timer)
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

class BaselineImpl implements Baseline {
  listeningMs = Number.NaN
  warmupMs = 0
  connectedMs = Number.NaN
  meshSettledMs = Number.NaN
  readonly peers: Peer[] = []
  private run_: RunState | undefined
  private nextId = 0
  private readonly killAll = () => {
    for (const p of this.peers) if (!p.exited) p.proc.kill('SIGKILL')
  }

  constructor(readonly nodes: number) {
    // Last resort if the parent exits without stop(): the peers also exit on IPC 'disconnect'.
    process.on('exit', this.killAll)
  }

  async start(dialsPerNode: number): Promise<void> {
    const script = fileURLToPath(new URL('./net-peer.js', import.meta.url))
    const t0 = performance.now()
    const ready: Promise<void>[] = []
    for (let i = 0; i < this.nodes; i++) {
      let resolveReady!: () => void
      const isReady = new Promise<void>((r) => {
        resolveReady = r
      })
      const peer = new Peer(i, script, (p, msg) => {
        if (msg.type === 'ready') {
          p.peerId = msg.peerId
          p.addr = msg.addr
          resolveReady()
        } else this.onMessage(p, msg)
      })
      this.peers.push(peer)
      ready.push(
        Promise.race([
          isReady,
          peer.exit.then(() => {
            throw new Error(`node ${i} exited during start`)
          }),
        ]),
      )
    }
    await withTimeout(Promise.all(ready), READY_TIMEOUT_MS, 'nodes did not start')
    this.listeningMs = performance.now() - t0

    for (const [i, peer] of this.peers.entries()) {
      const targets = this.peers
        .slice(Math.max(0, i - dialsPerNode), i)
        .map((p) => ({ peerId: p.peerId, addr: p.addr }))
      if (targets.length > 0) peer.send({ type: 'dial', targets })
    }

    const deadline = performance.now() + READY_TIMEOUT_MS
    for (;;) {
      const s = await this.status()
      if (s.every((x) => x.dialsConnected && x.meshPeers >= 1 && x.subscribers >= 1)) break
      if (performance.now() > deadline) throw new Error(`mesh not formed: ${describe(s)}`)
      await sleep(POLL_MS)
    }
    this.connectedMs = performance.now() - t0

    const meshDeadline = performance.now() + SETTLE_TIMEOUT_MS
    for (;;) {
      const s = await this.status()
      if (s.every((x) => x.meshPeers >= Math.min(x.subscribers, GOSSIPSUB_DLO))) {
        this.meshSettledMs = performance.now() - t0
        break
      }
      if (performance.now() > meshDeadline) break
      await sleep(POLL_MS)
    }
  }

  status(): Promise<PeerStatus[]> {
    return Promise.all(this.peers.map((p) => p.status()))
  }

  private onMessage(peer: Peer, msg: PeerToParent): void {
    const r = this.run_
    switch (msg.type) {
      case 'fatal':
        process.stderr.write(`node ${peer.index} failed: ${msg.error}\n`)
        return
      case 'published':
      case 'publish-failed': {
        const k = r ? msg.id - r.base : -1
        if (!r || k < 0 || k >= r.total || r.ack[k] !== 0) return
        r.ack[k] = msg.type === 'published' ? 1 : 2
        if (msg.type === 'published') r.publishAt[k] = msg.at
        r.acks++
        return
      }
      case 'received': {
        if (!r) return
        const n = this.nodes
        for (let j = 0; j < msg.ids.length; j++) {
          const k = msg.ids[j]! - r.base
          if (k < 0 || k >= r.total || k % n === peer.index) continue
          const cell = k * n + peer.index
          if (r.seen[cell]) continue
          r.seen[cell] = 1
          r.receipts[k]!++
          const at = msg.at[j]!
          if (at > r.lastAt[k]!) r.lastAt[k] = at
        }
        return
      }
      default:
        return
    }
  }

  private newRun(total: number, warmup: number): RunState {
    const r: RunState = {
      base: this.nextId,
      total,
      warmup,
      publishAt: new Float64Array(total),
      ack: new Uint8Array(total),
      acks: 0,
      seen: new Uint8Array(total * this.nodes),
      receipts: new Uint16Array(total),
      lastAt: new Float64Array(total),
    }
    this.nextId += total
    return r
  }

  /**
   * Publishes `count` messages round robin, closed loop: at most `window` in flight, the next one sent when the
   * oldest has reached every other node (or 5 s passed). Runs at whatever the machine sustains without
   * queueing, so it warms the JIT in every node without overloading cold processes.
   */
  async warm(count: number, bytes: number, window = 8): Promise<void> {
    if (count <= 0) return
    if (this.run_) throw new Error('warm: a run is in progress')
    const n = this.nodes
    const r = this.newRun(count, 0)
    const sentAt = new Float64Array(count)
    const t0 = performance.now()
    this.run_ = r
    try {
      let next = 0
      let oldest = 0
      while (oldest < count) {
        const now = performance.now()
        while (
          oldest < next &&
          (r.receipts[oldest]! >= n - 1 || r.ack[oldest] === 2 || now - sentAt[oldest]! > WARM_GIVE_UP_MS)
        )
          oldest++
        while (next < count && next - oldest < window) {
          this.peers[next % n]!.send({ type: 'publish', id: r.base + next, bytes })
          sentAt[next++] = now
        }
        await sleep(5)
      }
    } finally {
      this.run_ = undefined
    }
    this.warmupMs = performance.now() - t0
  }

  async run(options: RunOptions): Promise<RunResult> {
    const { rate, count, bytes = 1300, warmup = 20, lossWindowMs = 5000 } = options
    if (!(rate > 0) || !Number.isSafeInteger(count) || count < 1) throw new Error('run: bad rate or count')
    if (this.run_) throw new Error('run: another run is in progress')
    const n = this.nodes
    const total = warmup + count
    const r = this.newRun(total, warmup)
    const before = await this.status()
    const hostBefore = hostBusyMs()
    const selfBefore = process.cpuUsage()
    const wallBefore = performance.now()
    const exitedBefore = this.peers.filter((p) => p.exited).length
    this.run_ = r
    try {
      // Round robin over publishers, paced against a fixed schedule (catching up in bursts if late).
      const start = performance.now()
      for (let k = 0; k < total; k++) {
        const wait = start + (k * 1000) / rate - performance.now()
        if (wait > 0) await sleep(wait)
        this.peers[k % n]!.send({ type: 'publish', id: r.base + k, bytes })
      }
      const ackDeadline = performance.now() + ACK_TIMEOUT_MS
      while (r.acks < total && performance.now() < ackDeadline) await sleep(20)
      let lastPublish = 0
      for (let k = 0; k < total; k++) if (r.ack[k] === 1) lastPublish = Math.max(lastPublish, r.publishAt[k]!)
      const lossDeadline = (lastPublish || wallClock()) + lossWindowMs
      const complete = () => {
        for (let k = warmup; k < total; k++) if (r.ack[k] === 1 && r.receipts[k]! < n - 1) return false
        return true
      }
      while (!complete() && wallClock() < lossDeadline + REPORT_SLACK_MS) await sleep(20)
      // Receipts of a complete message may still be in the 50 ms batches of other messages: nothing to wait for.

      const latencies: number[] = []
      let lost = 0
      let publishFailed = 0
      let firstAt = Number.POSITIVE_INFINITY
      let lastAt = 0
      let lastDelivery = 0
      let published = 0
      for (let k = warmup; k < total; k++) {
        if (r.ack[k] === 2) publishFailed++
        if (r.ack[k] === 1) {
          published++
          firstAt = Math.min(firstAt, r.publishAt[k]!)
          lastAt = Math.max(lastAt, r.publishAt[k]!)
        }
        if (r.ack[k] === 1 && r.receipts[k] === n - 1 && r.lastAt[k]! <= lossDeadline) {
          latencies.push(r.lastAt[k]! - r.publishAt[k]!)
          lastDelivery = Math.max(lastDelivery, r.lastAt[k]!)
        } else lost++
      }
      const hostMs = hostBusyMs() - hostBefore
      const selfCpu = process.cpuUsage(selfBefore)
      const wallMs = performance.now() - wallBefore
      const after = await this.status().catch(() => undefined)
      const cpuMicros = (s: PeerStatus[]) => s.reduce((sum, x) => sum + x.cpuMicros, 0)
      const nodesMs = after ? (cpuMicros(after) - cpuMicros(before)) / 1000 : Number.NaN
      const span = (lastAt - firstAt) / 1000
      return {
        latencies,
        lost,
        publishFailed,
        offeredRate: rate,
        achievedRate: published > 1 && span > 0 ? (published - 1) / span : Number.NaN,
        deliveredRate:
          latencies.length > 0 && lastDelivery > firstAt
            ? latencies.length / ((lastDelivery - firstAt) / 1000)
            : 0,
        cpuMsPerMessage: nodesMs / total,
        otherCpuCores: Math.max(0, (hostMs - nodesMs - (selfCpu.user + selfCpu.system) / 1000) / wallMs),
        peersBefore: before.map((x) => x.peers),
        peersAfter: after ? after.map((x) => x.peers) : [],
        peersExited: this.peers.filter((p) => p.exited).length - exitedBefore,
      }
    } finally {
      this.run_ = undefined
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.stop()))
    process.off('exit', this.killAll)
  }
}

/** CPU time of all cores, busy (not idle) since boot, in ms. */
function hostBusyMs(): number {
  let ms = 0
  for (const c of os.cpus()) ms += c.times.user + c.times.nice + c.times.sys + c.times.irq
  return ms
}

function describe(s: PeerStatus[]): string {
  return s
    .map(
      (x) =>
        `#${x.index} peers ${x.peers} mesh ${x.meshPeers} subs ${x.subscribers} dials ${x.dialsConnected}`,
    )
    .join('; ')
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Forks `nodes` peers (bench/net-peer.ts, which must sit next to this module in dist/bench), has node i dial
 * nodes i-1 … i-dialsPerNode, and resolves once every node has its dials connected and at least one mesh
 * peer on the topic (then waits up to 5 s more for the meshes to settle), then warms the nodes up with
 * `warmupMessages` unmeasured messages. On failure every peer is stopped.
 */
export async function startBaseline(options: BaselineOptions = {}): Promise<Baseline> {
  const { nodes = 10, dialsPerNode = 3, warmupMessages = 500, warmupBytes = 1300 } = options
  if (!Number.isSafeInteger(nodes) || nodes < 2 || nodes > 1000) throw new Error('nodes must be 2..1000')
  const b = new BaselineImpl(nodes)
  try {
    await b.start(dialsPerNode)
    await b.warm(warmupMessages, warmupBytes)
  } catch (err) {
    await b.stop()
    throw err
  }
  return b
}
