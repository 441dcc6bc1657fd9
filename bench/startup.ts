/**
 * Start-up benchmark: how long `icn node start --dev` takes from spawning the process to `/ready` answering
 * 200, and how long `icn --help` takes to exit, each over several runs (median, min, max). See bench/README.md.
 *
 *   npm run build && node dist/bench/startup.js [--runs 5] [--warmup 1] [--only node|help] [--icn PATH] [--json]
 *
 * `--icn` times another checkout's bin/icn (e.g. an older build, to compare).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    only: { type: 'string' },
    icn: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
})
const RUNS = Number(args.runs)
if (!Number.isSafeInteger(RUNS) || RUNS < 1) throw new Error('--runs must be an integer >= 1')
const WARMUP = Number(args.warmup)
if (!Number.isSafeInteger(WARMUP) || WARMUP < 0) throw new Error('--warmup must be an integer >= 0')
if (args.only !== undefined && args.only !== 'node' && args.only !== 'help')
  throw new Error('--only must be node or help')
const NODE = args.only !== 'help'
const HELP = args.only !== 'node'

/** bin/icn of this checkout: dist/bench/startup.js sits two folders below the package root. */
const ICN = args.icn ?? join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'bin', 'icn')

function exited(child: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r()
    else child.once('exit', () => r())
  })
}

/** Spawn → the JSON line on stdout (node started) → GET /ready 200; then SIGTERM and wait for the exit. */
async function nodeStart(): Promise<{ startedMs: number; readyMs: number }> {
  const t0 = performance.now()
  const child = spawn(
    process.execPath,
    [ICN, 'node', 'start', '--dev', '--json', '--api-listen', '127.0.0.1:0', '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  try {
    const line = await new Promise<string>((res, rej) => {
      let buf = ''
      child.stdout!.setEncoding('utf8')
      child.stdout!.on('data', (d: string) => {
        buf += d
        const nl = buf.indexOf('\n')
        if (nl >= 0) res(buf.slice(0, nl))
      })
      child.once('exit', (code, sig) =>
        rej(new Error(`icn node start exited (${sig ?? code}) before it started`)),
      )
    })
    const startedMs = performance.now() - t0
    const { api } = JSON.parse(line) as { api: string }
    for (;;) {
      const ok = await fetch(`${api}/ready`).then(
        async (r) => {
          await r.body?.cancel()
          return r.status === 200
        },
        () => false,
      )
      if (ok) break
      if (performance.now() - t0 > 60_000) throw new Error('not ready within 60 s')
      await sleep(5)
    }
    return { startedMs, readyMs: performance.now() - t0 }
  } finally {
    child.kill('SIGTERM')
    await exited(child)
  }
}

async function help(): Promise<number> {
  const t0 = performance.now()
  const child = spawn(process.execPath, [ICN, '--help'], { stdio: ['ignore', 'ignore', 'inherit'] })
  await exited(child)
  if (child.exitCode !== 0) throw new Error(`icn --help exited ${child.exitCode ?? child.signalCode}`)
  return performance.now() - t0
}

interface Stat {
  median: number
  min: number
  max: number
}

function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b)
  return { median: s[Math.floor((s.length - 1) / 2)]!, min: s[0]!, max: s[s.length - 1]! }
}

async function main(): Promise<void> {
  // Not counted: the first runs warm the file system cache.
  for (let i = 0; i < WARMUP; i++) {
    if (NODE) await nodeStart()
    if (HELP) await help()
  }
  const ready: number[] = []
  const started: number[] = []
  const helps: number[] = []
  for (let i = 0; i < RUNS; i++) {
    if (NODE) {
      const r = await nodeStart()
      ready.push(r.readyMs)
      started.push(r.startedMs)
    }
    if (HELP) helps.push(await help())
  }
  const out = {
    node: process.version,
    runs: RUNS,
    ...(NODE ? { nodeStartToReadyMs: stat(ready), nodeStartToStartedMs: stat(started) } : {}),
    ...(HELP ? { helpMs: stat(helps) } : {}),
  }
  if (args.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  else {
    const row = (name: string, s: Stat) =>
      `${name.padEnd(36)} median ${s.median.toFixed(0).padStart(5)} ms  (min ${s.min.toFixed(0)}, max ${s.max.toFixed(0)})`
    const lines = [`${RUNS} runs on Node ${process.version}`]
    if (out.nodeStartToReadyMs) lines.push(row('icn node start --dev → /ready 200', out.nodeStartToReadyMs))
    if (out.nodeStartToStartedMs)
      lines.push(row('icn node start --dev → JSON line', out.nodeStartToStartedMs))
    if (out.helpMs) lines.push(row('icn --help', out.helpMs))
    process.stdout.write(`${lines.join('\n')}\n`)
  }
}

await main()
