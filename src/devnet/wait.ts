import type { ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { type NodeProbe, probeNode } from './probe.js'
import { nodeRunning } from './process.js'
import type { DevnetNodeState } from './state.js'

/** The latest look at one node while waiting: its probe, and which running nodes it is not connected to. */
export interface NodeLook {
  node: DevnetNodeState
  probe: NodeProbe
  /** How many running nodes it should be connected to. */
  expected: number
  /** Names of the running nodes it is not connected to. */
  missing: string[]
}

export interface MeshWaitOptions {
  /** The nodes waited for. */
  targets: DevnetNodeState[]
  /** Every node of the devnet: each target must be connected to every other one that runs. */
  all: DevnetNodeState[]
  timeoutMs: number
  /** Pause between the answer to one look at a node and the next look at it. */
  pollMs: number
  signal?: AbortSignal
  /** Children spawned by this process, by node name: their exit status ends the wait at once. */
  children?: Map<string, ChildProcess>
  /** A node answered /ready for the first time. */
  onReady: (node: DevnetNodeState) => void
  /** The number of connected nodes (of one node: of its peers) changed. */
  onMesh: (message: string, node?: string) => void
  /** The error for a target that is not running (`how`: its exit status, if known). */
  exitedError: (node: DevnetNodeState, how?: string) => Promise<Error>
  /** The error when `timeoutMs` passed, with the looks at the nodes not yet ready and connected. */
  timeoutError: (pending: NodeLook[]) => Promise<Error>
}

/** How long one look (each of its two requests) may take before it counts as no answer. */
const LOOK_TIMEOUT_MS = 1_000

/**
 * Wait until every target answers /ready and is connected to every other running node of the devnet; resolves
 * with the milliseconds waited.
 *
 * Each node is looked at on its own schedule: one look in flight per node, the next `pollMs` after its answer.
 * Looks taken in rounds, all nodes at once, waited each round for the slowest node (up to the one-second timeout
 * of a node too busy to answer while it starts), so a round took up to 1.3 s on a loaded 10-node devnet and the
 * last connection was seen that much later. A node's latest look stays its state until its next one; the wait
 * ends when the latest looks at all targets say ready and connected.
 */
export async function waitForMesh(o: MeshWaitOptions): Promise<number> {
  const started = performance.now()
  const looks = new Map<string, NodeLook>()
  const exits = new Map<string, string>()
  const ready = new Set<string>()
  const stop = new AbortController()
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal
  let lastMesh = -1

  return new Promise<number>((resolve, reject) => {
    let settled = false
    const finish = (err?: unknown) => {
      if (settled) return
      settled = true
      stop.abort()
      clearTimeout(timer)
      o.signal?.removeEventListener('abort', onAbort)
      if (err === undefined) resolve(performance.now() - started)
      else reject(err)
    }
    const onAbort = () => finish(o.signal?.reason)
    o.signal?.addEventListener('abort', onAbort, { once: true })
    if (o.signal?.aborted) return finish(o.signal.reason)

    const timer = setTimeout(() => {
      const pending = o.targets
        .map((node) => looks.get(node.name) ?? neverAnswered(node))
        .filter((l) => !l.probe.ready || l.missing.length > 0)
      o.timeoutError(pending).then(finish, finish)
    }, o.timeoutMs)

    for (const [name, child] of o.children ?? [])
      child.once('exit', (code, sig) => {
        exits.set(name, sig ? `signal ${sig}` : `code ${code}`)
        const node = o.targets.find((n) => n.name === name)
        if (node && !settled) o.exitedError(node, exits.get(name)).then(finish, finish)
      })

    const report = () => {
      const all = o.targets.map((n) => looks.get(n.name))
      const meshed = all.filter((l) => l?.probe.ready && l.missing.length === 0).length
      // One node (a restart): how many of the federation's running nodes it is connected to. Several: how many
      // of them are connected to all the others.
      const single = o.targets.length === 1 ? all[0] : undefined
      const now = single ? single.expected - single.missing.length : meshed
      if (now !== lastMesh && ready.size > 0 && o.all.length > 1) {
        lastMesh = now
        if (single)
          o.onMesh(`${single.node.name} connected to ${now}/${single.expected} peers`, single.node.name)
        else o.onMesh(`mesh ${meshed}/${o.targets.length} nodes connected`)
      }
      if (meshed === o.targets.length) finish()
    }

    const watch = async (node: DevnetNodeState) => {
      while (!settled) {
        if (!nodeRunning(node.pid, node.dataDir)) {
          // A child of this process: its exit event brings the status (and ends the wait).
          if (o.children?.has(node.name) && !exits.has(node.name)) await sleep(100, undefined, { signal })
          if (!settled) finish(await o.exitedError(node, exits.get(node.name)))
          return
        }
        const peers = o.all.filter((n) => n.name !== node.name && nodeRunning(n.pid, n.dataDir))
        const probe = await probeNode(node.apiUrl, { timeoutMs: LOOK_TIMEOUT_MS, signal })
        if (settled) return
        const have = new Set(probe.connected)
        const look = {
          node,
          probe,
          expected: peers.length,
          missing: peers.filter((p) => !have.has(p.peerId)).map((p) => p.name),
        }
        looks.set(node.name, look)
        if (probe.ready && !ready.has(node.name)) {
          ready.add(node.name)
          o.onReady(node)
        }
        report()
        if (!settled) await sleep(o.pollMs, undefined, { signal })
      }
    }
    for (const node of o.targets)
      watch(node).catch((err: unknown) => {
        if (!settled && !(stop.signal.aborted && (err as Error).name === 'AbortError')) finish(err)
      })
  })
}

function neverAnswered(node: DevnetNodeState): NodeLook {
  return {
    node,
    probe: { ready: false, readyDetail: 'not looked at yet', connected: [] },
    expected: 0,
    missing: [],
  }
}
