import { accessSync, constants, existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { delimiter, dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { InvalidOptionError } from '../node/options.js'
import { MonitorBinaryMissingError, MonitorStartError } from './errors.js'
import { freePorts } from './ports.js'
import { nodeRunning, REAP_WAIT_MS, spawnDetached, stopNode, tailLog, waitReaped } from './process.js'
import type { DevnetNodeState } from './state.js'

// `icn devnet up --monitor`: a real Prometheus (Debian's `prometheus`) scraping every node with the shipped rules
// (deploy/prometheus/alerts.yml), and Alertmanager (Debian's `prometheus-alertmanager`) with
// deploy/alertmanager/alertmanager.yml, both detached processes on free 127.0.0.1 ports with their files in
// <devnet>/monitor/. The configuration templates are filled in by the pure functions below, which the tests run
// through `promtool check config` and `amtool check-config`.

/** Folder of the monitoring files inside the devnet folder. */
export const MONITOR_DIR = 'monitor'
/** The programs and the Debian packages that hold them. */
export const MONITOR_PROGRAMS = {
  prometheus: { programs: ['prometheus'], debianPackage: 'prometheus' },
  alertmanager: {
    programs: ['prometheus-alertmanager', 'alertmanager'],
    debianPackage: 'prometheus-alertmanager',
  },
} as const
export type MonitorService = keyof typeof MONITOR_PROGRAMS

/** How long `startMonitor` waits for /-/ready of each. */
const MONITOR_READY_MS = 30_000
const STOP_GRACE_MS = 10_000

/** One of the two monitoring processes as recorded in devnet.json. */
export interface MonitorServiceState {
  /** `http://127.0.0.1:PORT`. */
  url: string
  port: number
  /** Process id of the last start; null once `down` stopped it. */
  pid: number | null
  /** Absolute path of its storage folder (its command line names it: how the devnet recognises the process). */
  dataDir: string
  config: string
  log: string
  /** Its command line (arguments after the program), reused when `up --monitor` starts a stopped devnet again. */
  program: string
  args: string[]
}

/** `monitor` in devnet.json. */
export interface DevnetMonitorState {
  prometheus: MonitorServiceState
  alertmanager: MonitorServiceState
  /** Where Alertmanager delivers (`--alert-webhook`), if anywhere. */
  webhookUrl?: string
}

/** `prometheus` and `alertmanager` in `devnet status`. */
export interface MonitorServiceStatus {
  url: string
  pid: number | null
  running: boolean
  /** GET /-/ready answered 200 within 1 s. */
  ready: boolean
}

export interface MonitorBinaries {
  prometheus: string
  alertmanager: string
}

/** The first executable called `name` on `path` (a PATH value), or undefined. */
function which(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

/**
 * Find Prometheus and Alertmanager on PATH (of `env`); throws MonitorBinaryMissingError naming the Debian packages
 * of those missing.
 */
export function findMonitorBinaries(env: NodeJS.ProcessEnv = process.env): MonitorBinaries {
  const path = env.PATH ?? ''
  const found: Partial<MonitorBinaries> = {}
  const missing: { program: string; debianPackage: string }[] = []
  for (const service of ['prometheus', 'alertmanager'] as const) {
    const spec = MONITOR_PROGRAMS[service]
    const bin = spec.programs.map((p) => which(p, path)).find((p) => p !== undefined)
    if (bin) found[service] = bin
    else missing.push({ program: spec.programs[0], debianPackage: spec.debianPackage })
  }
  if (missing.length > 0) throw new MonitorBinaryMissingError(missing)
  return found as MonitorBinaries
}

/** The repository's (or installed package's) `deploy/` folder: the nearest one above this file. */
export function findDeployDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const candidate = join(dir, 'deploy', 'prometheus', 'alerts.yml')
    if (existsSync(candidate) && existsSync(join(dir, 'package.json'))) return join(dir, 'deploy')
    const up = dirname(dir)
    if (up === dir)
      throw new Error(`cannot find deploy/prometheus/alerts.yml above ${fileURLToPath(import.meta.url)}`)
    dir = up
  }
}

/** A YAML single-quoted scalar. */
function yamlQuote(value: string): string {
  return `'${value.replace(/'/g, "''")}'`
}

/** Replace each quoted `'@NAME@'` of the template by its value; throws if one is not in the template. */
function fill(template: string, values: Record<string, string>): string {
  let out = template
  for (const [name, value] of Object.entries(values)) {
    const token = `'@${name}@'`
    if (!out.includes(token)) throw new Error(`the template has no ${token}`)
    out = out.split(token).join(yamlQuote(value))
  }
  return out
}

/** deploy/prometheus/prometheus.yml with its fields filled in (see the template's header). */
export function renderPrometheusConfig(
  template: string,
  v: { federation: string; rulesFile: string; alertmanager: string; targetsFile: string },
): string {
  return fill(template, {
    FEDERATION: v.federation,
    RULES_FILE: v.rulesFile,
    ALERTMANAGER: v.alertmanager,
    TARGETS_FILE: v.targetsFile,
  })
}

/**
 * deploy/alertmanager/alertmanager.yml with the webhook filled in, or without a webhook (its `webhook_configs`
 * block removed: the receiver then only records the alerts). Throws InvalidOptionError for a URL that is not
 * http(s).
 */
export function renderAlertmanagerConfig(template: string, v: { webhookUrl?: string }): string {
  if (v.webhookUrl !== undefined) return fill(template, { WEBHOOK_URL: checkWebhookUrl(v.webhookUrl) })
  const out = template.replace(/^( +)webhook_configs:\n(?:\1 +.*\n)+/m, '')
  if (out.includes("'@WEBHOOK_URL@'")) throw new Error('cannot remove webhook_configs from the template')
  return out
}

/** `--alert-webhook`: an http(s) URL; throws InvalidOptionError. Returns it. */
export function checkWebhookUrl(url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new InvalidOptionError(`--alert-webhook is not a URL: ${JSON.stringify(url)}`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new InvalidOptionError(
      `--alert-webhook must be an http:// or https:// URL, got ${JSON.stringify(url)}`,
    )
  return url
}

/** The file_sd targets of the nodes: `HOST:PORT` of each API with a `node` label. */
export function renderTargets(nodes: readonly Pick<DevnetNodeState, 'name' | 'apiUrl'>[]): string {
  const groups = nodes.map((n) => ({ targets: [new URL(n.apiUrl).host], labels: { node: n.name } }))
  return `${JSON.stringify(groups, null, 2)}\n`
}

/**
 * Write the configuration of both services into `<dir>/monitor/` (on new free ports; the stored data of an
 * earlier run is kept) and start them detached; resolves once both answer /-/ready. On failure the one that started is
 * stopped and MonitorStartError carries the log tail.
 */
export async function startMonitor(opts: {
  dir: string
  federation: string
  nodes: readonly DevnetNodeState[]
  binaries: MonitorBinaries
  webhookUrl?: string
  env?: NodeJS.ProcessEnv
  signal?: AbortSignal
}): Promise<DevnetMonitorState> {
  const deploy = findDeployDir()
  const mdir = join(opts.dir, MONITOR_DIR)
  const [promPort, amPort] = (await freePorts(2)) as [number, number]
  const service = (name: MonitorService, port: number): Omit<MonitorServiceState, 'program' | 'args'> => ({
    url: `http://127.0.0.1:${port}`,
    port,
    pid: null,
    dataDir: join(mdir, `${name}-data`),
    config: join(mdir, `${name}.yml`),
    log: join(mdir, `${name}.log`),
  })
  const am = service('alertmanager', amPort)
  const prom = service('prometheus', promPort)
  await mkdir(am.dataDir, { recursive: true, mode: 0o700 })
  await mkdir(prom.dataDir, { recursive: true, mode: 0o700 })
  const targetsFile = join(mdir, 'targets.json')
  await writeFile(targetsFile, renderTargets(opts.nodes), { mode: 0o600 })
  await writeFile(
    am.config,
    renderAlertmanagerConfig(await readFile(join(deploy, 'alertmanager', 'alertmanager.yml'), 'utf8'), {
      webhookUrl: opts.webhookUrl,
    }),
    { mode: 0o600 },
  )
  await writeFile(
    prom.config,
    renderPrometheusConfig(await readFile(join(deploy, 'prometheus', 'prometheus.yml'), 'utf8'), {
      federation: opts.federation,
      rulesFile: join(deploy, 'prometheus', 'alerts.yml'),
      alertmanager: `127.0.0.1:${amPort}`,
      targetsFile,
    }),
    { mode: 0o600 },
  )
  const state: DevnetMonitorState = {
    alertmanager: {
      ...am,
      program: opts.binaries.alertmanager,
      // Flags and values as separate arguments, so the data folder is one argument of its command line.
      args: [
        '--config.file',
        am.config,
        '--storage.path',
        am.dataDir,
        '--web.listen-address',
        `127.0.0.1:${amPort}`,
        '--cluster.listen-address=', // no gossip between Alertmanagers (it would listen on 0.0.0.0:9094)
      ],
    },
    prometheus: {
      ...prom,
      program: opts.binaries.prometheus,
      args: [
        '--config.file',
        prom.config,
        '--storage.tsdb.path',
        prom.dataDir,
        '--storage.tsdb.retention.time',
        '2d',
        '--web.listen-address',
        `127.0.0.1:${promPort}`,
      ],
    },
  }
  if (opts.webhookUrl) state.webhookUrl = opts.webhookUrl
  try {
    for (const name of ['alertmanager', 'prometheus'] as const) {
      opts.signal?.throwIfAborted()
      await runService(name, state[name], opts.env)
    }
  } catch (err) {
    await stopMonitor(state)
    throw err
  }
  return state
}

async function runService(
  name: MonitorService,
  s: MonitorServiceState,
  env?: NodeJS.ProcessEnv,
): Promise<void> {
  const child = spawnDetached([s.program], s.args, {
    logFile: s.log,
    env: { ...process.env, ...env },
    banner: `--- icn devnet: starting ${name} at ${new Date().toISOString()} ---\n`,
  })
  if (!child.pid) throw new MonitorStartError(name, `cannot start ${name}: ${s.program} did not run`)
  s.pid = child.pid
  let exited: string | undefined
  child.once('exit', (code, signal) => {
    exited = signal ? `signal ${signal}` : `code ${code}`
  })
  const deadline = Date.now() + MONITOR_READY_MS
  for (;;) {
    if (exited !== undefined || !nodeRunning(s.pid, s.dataDir)) {
      await sleep(100)
      throw new MonitorStartError(
        name,
        `${name} (pid ${s.pid}) exited${exited ? ` with ${exited}` : ''} before it was ready; last lines of ${s.log}:\n` +
          (await tailLog(s.log, 15)).map((l) => `    ${l}`).join('\n'),
      )
    }
    if (await answersReady(s.url)) return
    if (Date.now() > deadline)
      throw new MonitorStartError(
        name,
        `${name} did not answer ${s.url}/-/ready within ${MONITOR_READY_MS / 1000} s; last lines of ${s.log}:\n` +
          (await tailLog(s.log, 15)).map((l) => `    ${l}`).join('\n'),
      )
    await sleep(100)
  }
}

async function answersReady(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) })
    await res.arrayBuffer()
    return res.ok
  } catch {
    return false
  }
}

/** Stop both services if they run (SIGTERM, SIGKILL after 10 s); records them as stopped. */
export async function stopMonitor(
  m: DevnetMonitorState,
): Promise<{ service: MonitorService; pid: number }[]> {
  const stopped: { service: MonitorService; pid: number }[] = []
  await Promise.all(
    (['prometheus', 'alertmanager'] as const).map(async (name) => {
      const s = m[name]
      if (s.pid && nodeRunning(s.pid, s.dataDir)) {
        const pid = s.pid
        const r = await stopNode(pid, s.dataDir, { graceMs: STOP_GRACE_MS })
        if (r.gone) stopped.push({ service: name, pid })
        else throw new MonitorStartError(name, `${name} (pid ${pid}) did not exit`)
        await waitReaped(pid, REAP_WAIT_MS)
      }
      s.pid = null
    }),
  )
  return stopped
}

/** Whether each service runs and answers /-/ready. */
export async function monitorStatus(
  m: DevnetMonitorState,
): Promise<{ prometheus: MonitorServiceStatus; alertmanager: MonitorServiceStatus }> {
  const one = async (s: MonitorServiceState): Promise<MonitorServiceStatus> => {
    const running = nodeRunning(s.pid, s.dataDir)
    return { url: s.url, pid: s.pid, running, ready: running && (await answersReady(s.url)) }
  }
  const [prometheus, alertmanager] = await Promise.all([one(m.prometheus), one(m.alertmanager)])
  return { prometheus, alertmanager }
}
