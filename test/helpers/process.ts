/**
 * Spawn the real `bin/icn` (compiled `dist/`, so run `npm run build` first) as child processes for the process
 * level tests in `test/sim/`. Every child is tracked: `killAll()` (call it in afterEach/afterAll) SIGKILLs the
 * ones still running, and a process 'exit' hook does the same if the test worker dies. Temporary folders made
 * with `tempDir()` are removed by `removeTempDirs()`.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const ICN_BIN = join(REPO_ROOT, 'bin', 'icn')
/** Passphrase of every keystore the sim tests create. */
export const TEST_PASSPHRASE = 'sim-test-passphrase'

/** Extra environment for a child; `undefined` removes the variable. */
export type EnvChanges = Record<string, string | undefined>

export interface RunOptions {
  env?: EnvChanges
  /** Kill the child (SIGKILL) and fail after this long; default 20 s. */
  timeoutMs?: number
  /** Written to the child's stdin, which is then closed (stdin is a pipe, never a TTY). */
  input?: string | Uint8Array
  cwd?: string
}

export interface CliResult {
  /** Exit status, or null when a signal ended the process. */
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/**
 * The environment every child gets: the test process's own, without any ICN_* setting that could point the CLI
 * somewhere else, plus ICN_PASSPHRASE and ICN_LOG_LEVEL=warn, then `changes`.
 */
export function childEnv(changes: EnvChanges = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ICN_')) env[k] = v
  env.ICN_PASSPHRASE = TEST_PASSPHRASE
  env.ICN_LOG_LEVEL = 'warn'
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}

/** Spawn `node bin/icn ...args`, tracked for `killAll()`. stdout and stderr are pipes. */
export function spawnIcn(args: string[], opts: Omit<RunOptions, 'timeoutMs'> = {}): ChildProcess {
  if (!['icn.js', 'node.cjs', 'loader.js'].every((f) => existsSync(join(REPO_ROOT, 'dist', f))))
    throw new Error('dist/ is missing: run `npm run build` before the sim tests')
  const child = spawn(process.execPath, [ICN_BIN, ...args], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: childEnv(opts.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  children.add(child)
  child.once('exit', () => children.delete(child))
  child.stdin?.on('error', () => {})
  if (opts.input !== undefined) child.stdin?.end(opts.input)
  else child.stdin?.end()
  return child
}

/** Resolves when the child has exited (at once if it already has). */
export function exitOf(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
}

/** Run `icn ...args` to completion; rejects (after killing it) if it outlives the timeout. */
export async function runCli(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? 20_000
  const child = spawnIcn(args, opts)
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d
  })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  const closed = new Promise<Exit>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => resolve({ code, signal }))
  })
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(
        new Error(
          `icn ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      )
    }, timeoutMs)
  })
  try {
    const { code, signal } = await Promise.race([closed, timedOut])
    return { code, signal, stdout, stderr }
  } finally {
    clearTimeout(timer)
  }
}

/** What a running node prints as its one JSON line with `--json`. */
export interface NodeInfo {
  did: string
  api: string
  apiKey: string
  dataDir: string
  pid: number
  store: string
}

export interface RunningNode {
  proc: ChildProcess
  info: NodeInfo
  /** Everything the node wrote on stderr so far. */
  stderr(): string
  /** Send `signal` (default SIGTERM) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<Exit>
  waitExit(): Promise<Exit>
}

export interface StartNodeOptions extends Omit<RunOptions, 'input'> {
  /** Listen address; default 127.0.0.1:0 (a free port). */
  apiListen?: string
}

/**
 * Spawn `icn node start ...args --api-listen 127.0.0.1:0 --json` and wait for the JSON line the node prints once
 * it is running. Rejects with the captured stderr if the process exits first or after the timeout (20 s), in
 * which case the child is killed.
 */
export async function startNode(args: string[], opts: StartNodeOptions = {}): Promise<RunningNode> {
  const timeoutMs = opts.timeoutMs ?? 20_000
  const proc = spawnIcn(
    ['node', 'start', ...args, '--api-listen', opts.apiListen ?? '127.0.0.1:0', '--json'],
    {
      env: opts.env,
      cwd: opts.cwd,
    },
  )
  let stdout = ''
  let stderr = ''
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  const exited = exitOf(proc)
  // 'close' comes after the last stderr bytes, so a failure message carries all of them.
  const closed = new Promise<Exit>((resolve) => {
    proc.once('close', (code, signal) => resolve({ code, signal }))
  })
  const info = await new Promise<NodeInfo>((resolve, reject) => {
    let settled = false
    const fail = (why: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      proc.kill('SIGKILL')
      reject(new Error(`icn node start ${args.join(' ')}: ${why}\nstdout: ${stdout}\nstderr: ${stderr}`))
    }
    const timer = setTimeout(() => fail(`not running after ${timeoutMs} ms`), timeoutMs)
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d
      const nl = stdout.indexOf('\n')
      if (nl < 0 || settled) return
      let parsed: NodeInfo
      try {
        parsed = JSON.parse(stdout.slice(0, nl)) as NodeInfo
      } catch {
        fail('the first stdout line is not JSON')
        return
      }
      settled = true
      clearTimeout(timer)
      resolve(parsed)
    })
    void closed.then((e) => fail(`exited (code ${e.code}, signal ${e.signal}) before it was running`))
  })
  return {
    proc,
    info,
    stderr: () => stderr,
    waitExit: () => exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return exited
    },
  }
}

/** SIGKILL every child still running and wait for them to go. */
export async function killAll(): Promise<void> {
  const running = [...children]
  for (const child of running) child.kill('SIGKILL')
  await Promise.all(running.map((c) => exitOf(c)))
}

/** A new empty folder under the OS temp folder, removed by `removeTempDirs()`. */
export async function tempDir(prefix = 'icn-sim-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  tempDirs.add(dir)
  return dir
}

export async function removeTempDirs(): Promise<void> {
  const dirs = [...tempDirs]
  tempDirs.clear()
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
}

/** `icn init --data-dir <dir> --json ...extra`; throws unless it succeeds. */
export async function initDataDir(
  dataDir: string,
  extra: string[] = [],
  opts: RunOptions = {},
): Promise<{ did: string; apiKey: string; dataDir: string }> {
  const r = await runCli(['init', '--data-dir', dataDir, '--json', ...extra], opts)
  if (r.code !== 0) throw new Error(`icn init failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout) as { did: string; apiKey: string; dataDir: string }
}

/** A free TCP port on 127.0.0.1 (closed again before it is returned, so there is a small race). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : 0
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * Poll `GET {api}/ready` every 50 ms until `until(status)` holds (default: 200); returns that reply, or throws
 * with the last one after `timeoutMs`.
 */
export async function pollReady(
  api: string,
  opts: { until?: (status: number) => boolean; timeoutMs?: number } = {},
): Promise<{ status: number; body: unknown }> {
  const until = opts.until ?? ((s: number) => s === 200)
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000)
  let last: { status: number; body: unknown } | undefined
  for (;;) {
    try {
      const res = await fetch(`${api}/ready`)
      last = { status: res.status, body: await res.json().catch(() => undefined) }
      if (until(last.status)) return last
    } catch (err) {
      last = { status: 0, body: String(err) }
    }
    if (Date.now() > deadline)
      throw new Error(`${api}/ready: still ${last.status} ${JSON.stringify(last.body)} after the timeout`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
