import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { pidAlive } from '../node/datadir.js'

/** How long `stopNode` and `kill` wait for a dead node's pid to be reaped. */
export const REAP_WAIT_MS = 3_000

const HAS_PROC = process.platform === 'linux' && existsSync('/proc/self/cmdline')

/**
 * The node process `pid` is alive and is the one started on `dataDir`. On Linux its command line must name the
 * data folder, so a pid reused by an unrelated process (or a zombie, whose command line is empty) counts as not
 * running and is never signalled. Elsewhere only liveness is checked.
 */
export function nodeRunning(pid: number | null | undefined, dataDir: string): boolean {
  if (!pid || pid <= 0) return false
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  if (!HAS_PROC) return true
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return runsOn(
      cmdline,
      cmdline === '' ? readFileSync(`/proc/${pid}/stat`, 'utf8') : '',
      dataDir,
      process.pid,
    )
  } catch {
    return false
  }
}

/**
 * From `/proc/<pid>/cmdline` and (when that is empty) `/proc/<pid>/stat`: whether the process runs on `dataDir`.
 * An empty command line is a zombie's (state Z or X: gone), a kernel thread's, or that of a process in the middle
 * of its exec: the kernel has closed the descriptors that tell the parent the exec succeeded (so `spawn`
 * returned) but not yet set up the new program's arguments. A look right after spawning can fall into that
 * window on a busy host (the likeliest cause of a Prometheus that `devnet up --monitor` once took for exited
 * while it started). Such a process counts as running only if it is a child of this process (`selfPid`): the one
 * it just spawned, not a kernel thread that took a dead node's pid.
 */
export function runsOn(cmdline: string, stat: string, dataDir: string, selfPid: number): boolean {
  if (cmdline !== '') return cmdline.split('\0').includes(dataDir)
  // stat: "pid (comm) S ppid ...": the state and the parent follow the last ')' (comm may hold ')' and spaces).
  const [state, ppid] = stat
    .slice(stat.lastIndexOf(')') + 1)
    .trim()
    .split(' ')
  return state !== undefined && state !== 'Z' && state !== 'X' && Number(ppid) === selfPid
}

/** Send `signal` to the node process if it is still the node on `dataDir`; true if it was sent. */
export function signalNode(pid: number | null | undefined, dataDir: string, signal: NodeJS.Signals): boolean {
  if (!pid || !nodeRunning(pid, dataDir)) return false
  try {
    process.kill(pid, signal)
    return true
  } catch {
    return false
  }
}

/** Poll until the node process is gone; true if it went within `timeoutMs`. */
export async function waitGone(
  pid: number | null | undefined,
  dataDir: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (nodeRunning(pid, dataDir)) {
    if (Date.now() > deadline) return false
    await sleep(50, undefined, { signal })
  }
  return true
}

/**
 * After the node died: wait (at most `timeoutMs`, best effort) until its pid is gone altogether. A dead node
 * whose parent already exited is a zombie until init reaps it, which can take a second; waiting for that means
 * a caller checking the pid (`kill -0`) right after `kill` or `down` finds nothing. Returns whether it is gone.
 */
export async function waitReaped(pid: number | null | undefined, timeoutMs: number): Promise<boolean> {
  if (!pid) return true
  const deadline = Date.now() + timeoutMs
  while (pidAlive(pid)) {
    if (Date.now() > deadline) return false
    await sleep(50)
  }
  return true
}

/** SIGTERM, wait up to `graceMs`, then SIGKILL and wait again. Resolves to whether the process is gone. */
export async function stopNode(
  pid: number | null | undefined,
  dataDir: string,
  opts: { graceMs: number; signal?: AbortSignal },
): Promise<{ gone: boolean; forced: boolean }> {
  if (!signalNode(pid, dataDir, 'SIGTERM')) return { gone: !nodeRunning(pid, dataDir), forced: false }
  let forced = false
  if (!(await waitGone(pid, dataDir, opts.graceMs, opts.signal))) {
    forced = true
    signalNode(pid, dataDir, 'SIGKILL')
    if (!(await waitGone(pid, dataDir, 5_000, opts.signal))) return { gone: false, forced }
  }
  await waitReaped(pid, REAP_WAIT_MS)
  return { gone: true, forced }
}

/** The `bin/icn` of this checkout (or installed package): the nearest one above this file. */
export function findIcnBin(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const candidate = join(dir, 'bin', 'icn')
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return candidate
    const up = dirname(dir)
    if (up === dir) throw new Error(`cannot find bin/icn above ${fileURLToPath(import.meta.url)}`)
    dir = up
  }
}

/**
 * Start `icn ...args` detached from this process (own process group, stdin closed, stdout and stderr appended
 * to `logFile`, not waited for), so the command that started it can exit while it runs.
 */
export function spawnDetached(
  command: readonly string[],
  args: readonly string[],
  opts: { logFile: string; env: NodeJS.ProcessEnv; cwd?: string; banner?: string },
): ChildProcess {
  const fd = openSync(opts.logFile, 'a', 0o600)
  try {
    if (opts.banner) writeAll(fd, opts.banner)
    const [exe, ...pre] = command
    const child = spawn(exe!, [...pre, ...args], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: opts.env,
      cwd: opts.cwd,
    })
    child.on('error', () => {}) // reported through 'exit' / the pid check
    child.unref()
    return child
  } finally {
    closeSync(fd)
  }
}

function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text)
  let off = 0
  while (off < buf.length) off += writeSync(fd, buf, off)
}

/** A node's log line about one of the requests the devnet itself polls with (`GET /ready`, `GET /v1/peers`). */
function isPollLine(line: string): boolean {
  if (!line.startsWith('{') || !line.includes('"request"')) return false
  try {
    const entry = JSON.parse(line) as { msg?: unknown; url?: unknown; status?: unknown }
    return entry.msg === 'request' && (entry.url === '/ready' || entry.url === '/v1/peers')
  } catch {
    return false
  }
}

/**
 * The last `lines` lines of a node's log (reading at most its last 256 KiB), leaving out the lines about the
 * devnet's own polling requests, which would otherwise fill it; [] if it cannot be read.
 */
export async function tailLog(path: string, lines = 15): Promise<string[]> {
  let fh: Awaited<ReturnType<typeof open>> | undefined
  try {
    fh = await open(path, 'r')
    const { size } = await fh.stat()
    const length = Math.min(size, 256 * 1024)
    const buf = Buffer.alloc(length)
    await fh.read(buf, 0, length, size - length)
    const all = buf.toString('utf8').split('\n')
    if (all.at(-1) === '') all.pop()
    if (length < size) all.shift() // probably cut in the middle
    return all.filter((l) => !isPollLine(l)).slice(-lines)
  } catch {
    return []
  } finally {
    await fh?.close()
  }
}
