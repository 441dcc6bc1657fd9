/**
 * Network baseline on its own: N plain libp2p + gossipsub processes (default settings, no ICN logic), publish →
 * delivered-at-the-last-node latency at a given rate, or a sweep over rates. See bench/net-baseline.ts.
 *
 *   npm run build && node dist/bench/net-baseline-main.js [--nodes 10] [--rate 50] [--count 1000]
 *     [--bytes 1300] [--warmup 20] [--warmup-messages 500] [--sweep 50,100,200] [--json]
 *
 * A sweep reuses one set of nodes from rate to rate (give the rates in rising order) and starts a fresh set
 * only after a run that cost a node a connection or a process.
 */
import '../src/polyfill.js'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { type Baseline, type RunResult, type Summary, startBaseline, summarize } from './net-baseline.js'

/** A rate is sustained when p99 stays under this and nothing is lost. */
const SUSTAINED_P99_MS = 1000

interface Start {
  listeningMs: number
  connectedMs: number
  meshSettledMs: number
  warmupMs: number
  rssMiB: number[]
}

interface RateFigures {
  rate: number
  /** Set when this rate ran on freshly started nodes. */
  start?: Start
  latency: Summary
  lost: number
  publishFailed: number
  achievedRate: number
  deliveredRate: number
  cpuMsPerMessage: number
  otherCpuCores: number
  peersBefore: number[]
  peersAfter: number[]
  peersExited: number
}

function out(line = ''): void {
  process.stdout.write(`${line}\n`)
}

function int(name: string, value: string | undefined, min: number): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}`)
  return n
}

const ms = (v: number) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '-')
const sustained = (f: RateFigures) => f.lost === 0 && f.latency.p99 < SUSTAINED_P99_MS

function print(f: RateFigures, nodes: number, count: number): void {
  const l = f.latency
  out(`rate ${f.rate} msg/s offered, ${count} messages measured`)
  if (f.start) {
    const s = f.start
    out(
      `  started        connected ${ms(s.connectedMs)} after spawn (all listening at ${ms(s.listeningMs)}, ` +
        `meshes settled at ${ms(s.meshSettledMs)}); warm-up ${ms(s.warmupMs)}`,
    )
    out(`  RSS MiB        ${s.rssMiB.join(' ')} (after warm-up)`)
  } else out('  started        (same nodes as the previous rate)')
  out(`  latency        p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  max ${ms(l.max)}  (n ${l.n})`)
  out(
    `  lost           ${f.lost} of ${count}${f.publishFailed ? ` (${f.publishFailed} publishes failed)` : ''}`,
  )
  out(
    `  rates msg/s    achieved ${f.achievedRate.toFixed(1)}, delivered everywhere ${f.deliveredRate.toFixed(1)}`,
  )
  out(
    `  CPU            ${f.cpuMsPerMessage.toFixed(1)} ms per message over ${nodes} nodes ` +
      `(${(f.cpuMsPerMessage / nodes).toFixed(2)} per node); other work on the host ` +
      `${f.otherCpuCores.toFixed(2)} cores${f.otherCpuCores > 0.2 ? ' (figures skewed)' : ''}`,
  )
  out(`  peers          before ${f.peersBefore.join(' ')}; after ${f.peersAfter.join(' ')}`)
  if (f.peersExited) out(`  WARNING: ${f.peersExited} node processes exited during the run`)
}

function figures(rate: number, r: RunResult, start: Start | undefined): RateFigures {
  return {
    rate,
    ...(start ? { start } : {}),
    latency: summarize(r.latencies),
    lost: r.lost,
    publishFailed: r.publishFailed,
    achievedRate: r.achievedRate,
    deliveredRate: r.deliveredRate,
    cpuMsPerMessage: r.cpuMsPerMessage,
    otherCpuCores: r.otherCpuCores,
    peersBefore: r.peersBefore,
    peersAfter: r.peersAfter,
    peersExited: r.peersExited,
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '10' },
      rate: { type: 'string', default: '50' },
      count: { type: 'string', default: '1000' },
      bytes: { type: 'string', default: '1300' },
      warmup: { type: 'string', default: '20' },
      'warmup-messages': { type: 'string', default: '500' },
      sweep: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  })
  const nodes = int('nodes', values.nodes, 2)
  const count = int('count', values.count, 1)
  const bytes = int('bytes', values.bytes, 14)
  const warmup = int('warmup', values.warmup, 0)
  const warmupMessages = int('warmup-messages', values['warmup-messages'], 0)
  const rates = (values.sweep ?? values.rate).split(',').map((s) => Number(s.trim()))
  if (rates.some((v) => !(v > 0))) throw new Error('--rate and --sweep take positive numbers')
  const hardware = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    loadAverage: os.loadavg().map((l) => Number(l.toFixed(2))),
  }
  if (!values.json) {
    out(
      `libp2p baseline: ${nodes} processes on 127.0.0.1, gossipsub defaults (StrictSign), each dialing 3 earlier`,
    )
    out(
      `                 ${bytes}-byte messages, round-robin publishers; ${warmupMessages} warm-up messages ` +
        `after start, ${warmup} more before each rate`,
    )
    out(
      `hardware: ${hardware.cpus} CPUs (${hardware.cpuModel}), node ${hardware.node}, ` +
        `load average ${hardware.loadAverage.join(' ')}`,
    )
    out('latency: publish in the publisher → delivered at the last of the other nodes')
  }

  const results: RateFigures[] = []
  let baseline: Baseline | undefined
  try {
    let initialPeers: number[] = []
    for (const rate of rates) {
      let start: Start | undefined
      if (!baseline) {
        baseline = await startBaseline({ nodes, warmupMessages, warmupBytes: bytes })
        const s = await baseline.status()
        initialPeers = s.map((x) => x.peers)
        start = {
          listeningMs: baseline.listeningMs,
          connectedMs: baseline.connectedMs,
          meshSettledMs: baseline.meshSettledMs,
          warmupMs: baseline.warmupMs,
          rssMiB: s.map((x) => Math.round(x.rssBytes / 2 ** 20)),
        }
      }
      const r = await baseline.run({ rate, count, bytes, warmup })
      const f = figures(rate, r, start)
      results.push(f)
      if (!values.json) {
        out()
        print(f, nodes, count)
      }
      if (r.peersExited > 0 || initialPeers.some((p, i) => (r.peersAfter[i] ?? 0) < p)) {
        await baseline.stop()
        baseline = undefined
      }
    }
  } finally {
    await baseline?.stop()
  }

  const best = results.filter(sustained).reduce<number | null>((m, f) => Math.max(m ?? 0, f.rate), null)
  const sustainedMeans = `p99 < ${SUSTAINED_P99_MS} ms and nothing lost`
  if (values.json) {
    out(
      JSON.stringify(
        {
          hardware,
          params: { nodes, count, bytes, warmup, warmupMessages, dialsPerNode: 3, rates },
          results,
          ...(values.sweep ? { highestSustainedRate: best, sustainedMeans } : {}),
        },
        null,
        2,
      ),
    )
  } else if (values.sweep) {
    out()
    out(
      best === null
        ? `no rate sustained (${sustainedMeans})`
        : `highest rate sustained (${sustainedMeans}): ${best} msg/s`,
    )
    const skewed = results.filter((f) => f.otherCpuCores > 0.2).map((f) => f.rate)
    if (skewed.length) out(`other work on the host skewed the figures at ${skewed.join(', ')} msg/s: repeat`)
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
