import type { ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm, rmdir } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { InvalidOptionError, type StoreKind } from '../node/options.js'
import { createDevnet, plural } from './create.js'
import {
  DevnetRunningError,
  DevnetStopError,
  DevnetTimeoutError,
  MonitorStartError,
  NodeExitedError,
  NodeNotRunningError,
  UnknownNodeError,
} from './errors.js'
import {
  checkWebhookUrl,
  findMonitorBinaries,
  MONITOR_DIR,
  type MonitorBinaries,
  type MonitorServiceStatus,
  monitorStatus,
  startMonitor,
  stopMonitor,
} from './monitor.js'
import { checkDevnetSettings, DEFAULT_DEVNET_TIMEOUT_S } from './options.js'
import { dropDatabases } from './pg.js'
import { probeNode } from './probe.js'
import {
  findIcnBin,
  nodeRunning,
  REAP_WAIT_MS,
  spawnDetached,
  stopNode,
  tailLog,
  waitGone,
  waitReaped,
} from './process.js'
import {
  type DevnetNodeState,
  type DevnetState,
  GENESIS_FILE,
  loadState,
  MEMBERS_DIR,
  PASSPHRASE_FILE,
  readState,
  STATE_FILE,
  withLock,
  writeState,
} from './state.js'
import { type NodeLook, waitForMesh } from './wait.js'

/** How long a node gets to stop after SIGTERM before it is killed. */
const STOP_GRACE_MS = 10_000
/** How often `up` and `restart` look at the nodes while waiting. */
const POLL_MS = 200
const LOG_TAIL_LINES = 15

/** A step of `up`, `restart` or `down`, for the caller to show (the CLI writes `message` to stderr). */
export interface DevnetProgress {
  kind: 'create' | 'start' | 'ready' | 'mesh' | 'stop' | 'done'
  message: string
  node?: string
  /** With `done`: milliseconds from the start of the wait (the processes were just started) to connected. */
  elapsedMs?: number
}

/** How the devnet runs its nodes and reports; shared by every operation of one `Devnet`. */
export interface DevnetHooks {
  onProgress?: (event: DevnetProgress) => void
  /** Extra environment for the node processes (on top of this process's; ICN_PASSPHRASE is always set). */
  env?: NodeJS.ProcessEnv
  /** What runs `icn`: default `[process.execPath, <package>/bin/icn]`. */
  command?: string[]
}

export interface DevnetUpOptions extends DevnetHooks {
  dir: string
  /** Default 3; for a stopped devnet, the number it has (giving another number needs `fresh`). */
  nodes?: number
  /** Default sqlite. */
  store?: StoreKind
  pgUrl?: string
  basePort?: number
  /** Default 60 s. */
  timeoutMs?: number
  fresh?: boolean
  /**
   * Also start Prometheus (scraping every node, with deploy/prometheus/alerts.yml) and Alertmanager on free ports;
   * throws MonitorBinaryMissingError before anything starts if they are not installed.
   */
  monitor?: boolean
  /** With `monitor`: where Alertmanager delivers the alerts (a webhook receiver). */
  alertWebhook?: string
  signal?: AbortSignal
}

/** One node as `status()` sees it. */
export interface DevnetNodeStatus {
  name: string
  apiUrl: string
  apiKey: string
  did: string
  peerId: string
  p2pAddr: string
  dataDir: string
  pid: number | null
  /** The recorded process is alive and is this node (its command line names the data folder). */
  running: boolean
  /** GET /ready answered 200 within 1 s. */
  ready: boolean
  /** Devnet nodes it lists as connected in GET /v1/peers. */
  connectedPeers: number
  /** Devnet nodes it should be connected to: all the others. */
  expectedPeers: number
  /**
   * The founding member homed at this node: its DID and its folder (for `--member DIR`; it opens without a
   * prompt). Null for a devnet created before devnets had members.
   */
  member: { did: string; dir: string } | null
}

export interface DevnetStatus {
  dir: string
  name: string
  federation: string
  genesis: string
  store: StoreKind
  nodes: DevnetNodeStatus[]
  /** Prometheus, if `up --monitor` started one (running or not); null otherwise. */
  prometheus: MonitorServiceStatus | null
  /** Alertmanager, likewise. */
  alertmanager: MonitorServiceStatus | null
}

export interface DevnetDownResult {
  /** The nodes that were running, and whether SIGKILL was needed. */
  stopped: { name: string; pid: number; forced: boolean }[]
  /** Prometheus and Alertmanager, if they were running. */
  monitorStopped: { service: 'prometheus' | 'alertmanager'; pid: number }[]
  cleaned: boolean
}

/**
 * A local federation of `icn node start` processes on 127.0.0.1, recorded in `<dir>/devnet.json`. Every
 * operation re-reads that file first, so several commands (or a benchmark and the CLI) can manage one devnet;
 * changes are serialised by a lock file in the folder.
 */
export class Devnet {
  private constructor(
    private state: DevnetState,
    private readonly hooks: DevnetHooks,
  ) {}

  /** Open the devnet recorded in `dir`; throws DevnetNotFoundError if there is none. */
  static async open(dir: string, hooks: DevnetHooks = {}): Promise<Devnet> {
    return new Devnet(await loadState(resolve(dir)), hooks)
  }

  /**
   * Create and start a devnet in `opts.dir`, or start again the stopped one recorded there (`fresh` replaces it
   * instead), then wait until every node is ready and connected to all the others. Throws DevnetRunningError if
   * the devnet there still runs, NodeExitedError if a node exits meanwhile, DevnetTimeoutError after
   * `timeoutMs`; in both last cases the nodes are left running (stop them with `down()`).
   */
  static async up(opts: DevnetUpOptions): Promise<Devnet> {
    const s = checkDevnetSettings({
      dir: opts.dir,
      nodes: opts.nodes,
      store: opts.store ?? 'sqlite',
      pgUrl: opts.pgUrl,
      basePort: opts.basePort,
      timeoutMs: opts.timeoutMs ?? DEFAULT_DEVNET_TIMEOUT_S * 1000,
      fresh: opts.fresh ?? false,
    })
    const hooks: DevnetHooks = { onProgress: opts.onProgress, env: opts.env, command: opts.command }
    opts.signal?.throwIfAborted()
    if (opts.alertWebhook !== undefined && !opts.monitor)
      throw new InvalidOptionError('--alert-webhook is only used with --monitor')
    if (opts.alertWebhook !== undefined) checkWebhookUrl(opts.alertWebhook)
    // Checked before anything is created or started: no devnet starts without the monitoring asked for.
    const binaries = opts.monitor ? findMonitorBinaries({ ...process.env, ...opts.env }) : undefined
    const dirExisted = existsSync(s.dir)
    await mkdir(s.dir, { recursive: true, mode: 0o700 })
    const { devnet, children } = await withLock(s.dir, async () => {
      const existing = await readState(s.dir)
      if (existing) {
        const running = existing.nodes.filter((n) => nodeRunning(n.pid, n.dataDir)).map((n) => n.name)
        if (running.length > 0) throw new DevnetRunningError(s.dir, running)
        const old = new Devnet(existing, hooks)
        if (!s.fresh) {
          if (s.nodes !== undefined && s.nodes !== existing.nodes.length)
            throw new InvalidOptionError(
              `the stopped devnet in ${s.dir} has ${existing.nodes.length} nodes, not ${s.nodes}: leave out --nodes ` +
                'to start it again, or add --fresh to replace it with a new one',
            )
          if (opts.store !== undefined && opts.store !== existing.store)
            throw new InvalidOptionError(
              `the stopped devnet in ${s.dir} uses ${existing.store}: add --fresh to replace it with a new one`,
            )
          old.progress(
            'start',
            `starting the stopped devnet in ${s.dir} again (${plural(existing.nodes.length, 'node')})`,
          )
          return { devnet: old, children: await old.spawn(existing.nodes.map((n) => n.name)) }
        }
        old.progress('create', `removing the stopped devnet in ${s.dir} (--fresh)`)
        await old.removeFiles()
      }
      const created = new Devnet(await createDevnet(s, hooks), hooks)
      return { devnet: created, children: await created.spawn(created.state.nodes.map((n) => n.name)) }
    }).catch(async (err: unknown) => {
      // A folder this call made and left empty (nothing was created in it) goes again.
      if (!dirExisted) await rmdir(s.dir).catch(() => {})
      throw err
    })
    await devnet.waitConnected({ timeoutMs: s.timeoutMs, signal: opts.signal, children })
    if (binaries)
      await devnet.startMonitoring(binaries, opts.alertWebhook, opts.signal).catch((err: unknown) => {
        if (err instanceof MonitorStartError) err.message += `\n${devnet.leftRunningHint()}`
        throw err
      })
    return devnet
  }

  /** Start Prometheus and Alertmanager for this devnet (stopping a recorded pair that still runs first). */
  private async startMonitoring(
    binaries: MonitorBinaries,
    webhookUrl: string | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    await withLock(this.dir, async () => {
      await this.reload()
      if (this.state.monitor) await stopMonitor(this.state.monitor)
      this.progress('start', 'starting Prometheus and Alertmanager (--monitor)')
      const monitor = await startMonitor({
        dir: this.dir,
        federation: this.state.federation,
        nodes: this.state.nodes,
        binaries,
        webhookUrl,
        env: this.hooks.env,
        signal,
      })
      this.state.monitor = monitor
      await writeState(this.state)
      this.progress('ready', `Prometheus ${monitor.prometheus.url}  Alertmanager ${monitor.alertmanager.url}`)
    })
  }

  /** Prometheus' and Alertmanager's URLs, if this devnet has them (as of the last operation). */
  get monitor(): { prometheus: string; alertmanager: string } | undefined {
    const m = this.state.monitor
    return m ? { prometheus: m.prometheus.url, alertmanager: m.alertmanager.url } : undefined
  }

  get dir(): string {
    return this.state.dir
  }

  get federation(): string {
    return this.state.federation
  }

  /** The recorded nodes (as of the last operation). */
  get nodes(): readonly DevnetNodeState[] {
    return this.state.nodes
  }

  /** The node called `name`; throws UnknownNodeError. */
  node(name: string): DevnetNodeState {
    const node = this.state.nodes.find((n) => n.name === name)
    if (!node)
      throw new UnknownNodeError(
        name,
        this.state.nodes.map((n) => n.name),
      )
    return node
  }

  /** Every node: process alive, /ready, connected peers (each HTTP question within 1 s). */
  async status(opts: { signal?: AbortSignal } = {}): Promise<DevnetStatus> {
    await this.reload()
    const st = this.state
    const peerIds = new Set(st.nodes.map((n) => n.peerId))
    const nodes = await Promise.all(
      st.nodes.map(async (n): Promise<DevnetNodeStatus> => {
        const running = nodeRunning(n.pid, n.dataDir)
        const probe = running
          ? await probeNode(n.apiUrl, { timeoutMs: 1_000, signal: opts.signal })
          : { ready: false, connected: [] }
        return {
          name: n.name,
          apiUrl: n.apiUrl,
          apiKey: n.apiKey,
          did: n.did,
          peerId: n.peerId,
          p2pAddr: n.p2pAddr,
          dataDir: n.dataDir,
          pid: n.pid,
          running,
          ready: probe.ready,
          connectedPeers: probe.connected.filter((p) => p !== n.peerId && peerIds.has(p)).length,
          expectedPeers: st.nodes.length - 1,
          member: n.member ? { did: n.member.did, dir: n.member.dir } : null,
        }
      }),
    )
    const monitor = st.monitor ? await monitorStatus(st.monitor) : undefined
    return {
      dir: st.dir,
      name: st.name,
      federation: st.federation,
      genesis: st.genesis,
      store: st.store,
      nodes,
      prometheus: monitor?.prometheus ?? null,
      alertmanager: monitor?.alertmanager ?? null,
    }
  }

  /** SIGKILL the node (a crash) and wait until it is gone. Throws NodeNotRunningError if it is not running. */
  async kill(name: string): Promise<{ name: string; pid: number }> {
    return withLock(this.dir, async () => {
      await this.reload()
      const node = this.node(name)
      if (!node.pid || !nodeRunning(node.pid, node.dataDir)) throw new NodeNotRunningError(name)
      const pid = node.pid
      process.kill(pid, 'SIGKILL')
      if (!(await waitGone(pid, node.dataDir, 5_000))) throw new DevnetStopError([{ name, pid }])
      await waitReaped(pid, REAP_WAIT_MS)
      // No progress event: the result is the report (the CLI prints it once, on stdout).
      return { name, pid }
    })
  }

  /**
   * Stop the node if it runs (SIGTERM, SIGKILL after 10 s), start it again with the same arguments and wait
   * until it is ready and connected to every other running node.
   */
  async restart(
    name: string,
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<DevnetNodeStatus> {
    const children = await withLock(this.dir, async () => {
      await this.reload()
      const node = this.node(name)
      if (node.pid && nodeRunning(node.pid, node.dataDir)) {
        this.progress('stop', `stopping ${name} (pid ${node.pid})`, name)
        const r = await stopNode(node.pid, node.dataDir, { graceMs: STOP_GRACE_MS, signal: opts.signal })
        if (!r.gone) throw new DevnetStopError([{ name, pid: node.pid }])
      }
      return this.spawn([name])
    })
    await this.waitConnected({
      names: [name],
      timeoutMs: opts.timeoutMs ?? DEFAULT_DEVNET_TIMEOUT_S * 1000,
      signal: opts.signal,
      children,
    })
    const status = await this.status({ signal: opts.signal })
    return status.nodes.find((n) => n.name === name)!
  }

  /**
   * Stop every node (SIGTERM, SIGKILL after 10 s), check none is left and record them as stopped. With
   * `clean`, also remove the devnet's files (and, on PostgreSQL, drop the node databases).
   */
  async down(opts: { clean?: boolean; signal?: AbortSignal } = {}): Promise<DevnetDownResult> {
    const result = await withLock(this.dir, async (): Promise<DevnetDownResult> => {
      await this.reload()
      const running = this.state.nodes.filter((n) => nodeRunning(n.pid, n.dataDir))
      if (running.length > 0) this.progress('stop', `stopping ${plural(running.length, 'node')}`)
      const stopped = await Promise.all(
        running.map(async (n) => {
          const pid = n.pid!
          const r = await stopNode(pid, n.dataDir, { graceMs: STOP_GRACE_MS, signal: opts.signal })
          this.progress('stop', `${n.name} stopped${r.forced ? ' (killed after 10 s)' : ''}`, n.name)
          return { name: n.name, pid, forced: r.forced }
        }),
      )
      const left = this.state.nodes.filter((n) => nodeRunning(n.pid, n.dataDir))
      if (left.length > 0) throw new DevnetStopError(left.map((n) => ({ name: n.name, pid: n.pid! })))
      const monitorStopped = this.state.monitor ? await stopMonitor(this.state.monitor) : []
      if (monitorStopped.length > 0)
        this.progress('stop', `${monitorStopped.map((m) => m.service).join(' and ')} stopped`)
      for (const n of this.state.nodes) n.pid = null
      this.state.stoppedAt = new Date().toISOString()
      await writeState(this.state)
      if (opts.clean) await this.removeFiles()
      return { stopped, monitorStopped, cleaned: opts.clean === true }
    })
    if (opts.clean) await rmdir(this.dir).catch(() => {}) // only if nothing else is in it
    return result
  }

  /**
   * Wait until the nodes `names` (default all) are ready and each is connected to every other running node of
   * the devnet. Throws NodeExitedError as soon as one of them is not running, DevnetTimeoutError after
   * `timeoutMs`. `children` (from a spawn in this process) gives the exit status of a node that exits.
   */
  async waitConnected(opts: {
    names?: string[]
    timeoutMs: number
    signal?: AbortSignal
    children?: Map<string, ChildProcess>
  }): Promise<void> {
    const targets = (opts.names ?? this.state.nodes.map((n) => n.name)).map((name) => this.node(name))
    const elapsedMs = await waitForMesh({
      targets,
      all: this.state.nodes,
      timeoutMs: opts.timeoutMs,
      pollMs: POLL_MS,
      signal: opts.signal,
      children: opts.children,
      onReady: (node) => this.progress('ready', `${node.name} ready`, node.name),
      onMesh: (message, node) => this.progress('mesh', message, node),
      exitedError: (node, how) => this.exitedError(node, how),
      timeoutError: (pending) => this.timeoutError(opts.timeoutMs, pending),
    })
    const what = targets.length === 1 ? targets[0]!.name : `all ${targets.length} nodes`
    this.hooks.onProgress?.({
      kind: 'done',
      message: `${what} ready and connected (${(elapsedMs / 1000).toFixed(1)} s after ${targets.length === 1 ? 'its process' : 'their processes'} started)`,
      elapsedMs,
    })
  }

  private progress(kind: DevnetProgress['kind'], message: string, node?: string): void {
    this.hooks.onProgress?.(node ? { kind, message, node } : { kind, message })
  }

  private async reload(): Promise<void> {
    this.state = await loadState(this.state.dir)
  }

  /** Start the named nodes detached with their recorded arguments, record their pids, return the children. */
  private async spawn(names: string[]): Promise<Map<string, ChildProcess>> {
    const passphrase = (await readFile(join(this.dir, PASSPHRASE_FILE), 'utf8')).trim()
    const command = this.hooks.command ?? [process.execPath, findIcnBin()]
    const env = { ...process.env, ...this.hooks.env, ICN_PASSPHRASE: passphrase }
    const children = new Map<string, ChildProcess>()
    try {
      for (const name of names) {
        const node = this.node(name)
        const child = spawnDetached(command, node.args, {
          logFile: node.log,
          env,
          cwd: this.dir,
          banner: `--- icn devnet: starting ${name} at ${new Date().toISOString()} ---\n`,
        })
        if (!child.pid) throw new Error(`cannot start ${name}: ${command.join(' ')} did not run`)
        node.pid = child.pid
        children.set(name, child)
        this.progress('start', `${name} started (pid ${child.pid})`, name)
      }
    } finally {
      delete this.state.stoppedAt
      await writeState(this.state)
    }
    return children
  }

  private async exitedError(node: DevnetNodeState, how?: string): Promise<NodeExitedError> {
    const tail = await tailLog(node.log, LOG_TAIL_LINES)
    return new NodeExitedError(
      node.name,
      `${node.name} (pid ${node.pid}) exited${how ? ` with ${how}` : ''} before it was ready and connected; ` +
        `last lines of ${node.log}:\n${indent(tail)}\n${this.leftRunningHint()}`,
    )
  }

  private async timeoutError(timeoutMs: number, pending: NodeLook[]): Promise<DevnetTimeoutError> {
    const lines = [`not every node was ready and connected within ${timeoutMs / 1000} s:`]
    for (const p of pending)
      lines.push(
        p.probe.ready
          ? `  ${p.node.name}: ready, connected to ${p.expected - p.missing.length}/${p.expected} ` +
              `(missing ${p.missing.join(', ')}${p.probe.peersProblem ? `; ${p.probe.peersProblem}` : ''})`
          : `  ${p.node.name}: not ready (${p.probe.readyDetail})`,
      )
    for (const p of pending) {
      lines.push(`--- ${p.node.name}: last lines of ${p.node.log} ---`)
      lines.push(indent(await tailLog(p.node.log, LOG_TAIL_LINES)))
    }
    lines.push(this.leftRunningHint())
    return new DevnetTimeoutError(
      pending.map((p) => p.node.name),
      lines.join('\n'),
    )
  }

  private leftRunningHint(): string {
    const dir = quote(this.dir)
    return (
      `The nodes are left running so you can look: \`icn devnet status --dir ${dir}\`; ` +
      `stop them with \`icn devnet down --dir ${dir}\`.`
    )
  }

  /** Remove what the devnet created in its folder (never anything else) and drop its databases. */
  private async removeFiles(): Promise<void> {
    const st = this.state
    if (st.store === 'postgres' && st.pgUrl) {
      const names = st.nodes.map((n) =>
        n.pgUrl ? decodeURIComponent(new URL(n.pgUrl).pathname.slice(1)) : '',
      )
      await dropDatabases(
        st.pgUrl,
        names.filter((n) => n),
      )
    }
    for (const n of st.nodes) {
      if (dirname(n.dataDir) === st.dir) await rm(n.dataDir, { recursive: true, force: true })
      if (n.member && dirname(n.member.dir) === join(st.dir, MEMBERS_DIR))
        await rm(n.member.dir, { recursive: true, force: true })
    }
    await rmdir(join(st.dir, MEMBERS_DIR)).catch(() => {})
    if (st.monitor) await rm(join(st.dir, MONITOR_DIR), { recursive: true, force: true })
    for (const f of [PASSPHRASE_FILE, GENESIS_FILE, STATE_FILE]) await rm(join(st.dir, f), { force: true })
  }
}

function indent(lines: string[]): string {
  return lines.length > 0 ? lines.map((l) => `    ${l}`).join('\n') : '    (empty)'
}

function quote(path: string): string {
  return /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, "'\\''")}'`
}
