import type { ChildProcess } from 'node:child_process'
import { setMaxListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { followEvents } from '../api/events.js'
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
 * Each node is looked at on its own schedule (`GET /ready` and `GET /v1/peers`, one look in flight per node,
 * the next `pollMs` after its answer) until it is ready; from then on its `/v1/events` stream says when a peer
 * connects or goes, so it is not asked again (after a snapshot of `/v1/peers` taken once the stream is open):
 * - Looks taken in rounds, all nodes at once, waited each round for the slowest node (up to the one-second
 *   timeout of a node too busy to answer while it starts), so a round took up to 1.3 s on a loaded 10-node
 *   devnet and the last connection was seen that much later.
 * - Looks every 200 ms at every node cost the starting nodes about a tenth of their CPU (a 10-node devnet on two
 *   cores: 16.0 CPU-s with looks every second against 17.8 with looks every 200 ms, the mean of six runs each),
 *   and the events say it at once.
 * When the latest states of all targets say ready and connected, one more look at each confirms it (a
 * disconnect could fall between a stream's opening and its snapshot); a node whose stream ends (a restart) is
 * looked at again as before.
 */
export async function waitForMesh(o: MeshWaitOptions): Promise<number> {
  const started = performance.now()
  const looks = new Map<string, NodeLook>()
  const exits = new Map<string, string>()
  const ready = new Set<string>()
  /** Peers connected, by node, for the nodes whose event stream is open. */
  const following = new Map<string, Set<string>>()
  const stop = new AbortController()
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal
  // Every node has a look, a stream or a pause on it at a time: with more than a few nodes, more than Node's
  // default of 10 listeners (which it reports as a possible leak on the user's terminal).
  setMaxListeners(10 + 4 * o.targets.length, signal, stop.signal)
  let lastMesh = -1
  let confirming = false

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
        .filter((l) => !meshed(l))
      o.timeoutError(pending).then(finish, finish)
    }, o.timeoutMs)

    for (const [name, child] of o.children ?? [])
      child.once('exit', (code, sig) => {
        exits.set(name, sig ? `signal ${sig}` : `code ${code}`)
        const node = o.targets.find((n) => n.name === name)
        if (node && !settled) o.exitedError(node, exits.get(name)).then(finish, finish)
      })

    const lookOf = (node: DevnetNodeState, probe: NodeProbe): NodeLook => {
      const peers = o.all.filter((n) => n.name !== node.name && nodeRunning(n.pid, n.dataDir))
      const have = new Set(probe.connected)
      return {
        node,
        probe,
        expected: peers.length,
        missing: peers.filter((p) => !have.has(p.peerId)).map((p) => p.name),
      }
    }

    const record = (node: DevnetNodeState, probe: NodeProbe) => {
      if (settled) return
      looks.set(node.name, lookOf(node, probe))
      if (probe.ready && !ready.has(node.name)) {
        ready.add(node.name)
        o.onReady(node)
      }
      report()
    }

    const report = () => {
      const all = o.targets.map((n) => looks.get(n.name))
      const done = all.filter((l) => l && meshed(l)).length
      // One node (a restart): how many of the federation's running nodes it is connected to. Several: how many
      // of them are connected to all the others.
      const single = o.targets.length === 1 ? all[0] : undefined
      const now = single ? single.expected - single.missing.length : done
      if (now !== lastMesh && ready.size > 0 && o.all.length > 1) {
        lastMesh = now
        if (single)
          o.onMesh(`${single.node.name} connected to ${now}/${single.expected} peers`, single.node.name)
        else o.onMesh(`mesh ${done}/${o.targets.length} nodes connected`)
      }
      if (done === o.targets.length) void confirm().catch(finish)
    }

    /** Look at every target once more; finish if all are still ready and connected. */
    const confirm = async () => {
      if (confirming || settled) return
      confirming = true
      try {
        const probes = await Promise.all(
          o.targets.map((n) => probeNode(n.apiUrl, { timeoutMs: LOOK_TIMEOUT_MS, signal })),
        )
        if (settled) return
        const fresh = o.targets.map((n, i) => lookOf(n, probes[i]!))
        for (const l of fresh) {
          looks.set(l.node.name, l)
          const f = following.get(l.node.name)
          if (f) {
            f.clear()
            for (const p of l.probe.connected) f.add(p)
          }
        }
        if (fresh.every(meshed)) return finish()
      } finally {
        confirming = false
      }
      report() // what the looks found instead
    }

    /** Follow a ready node's peer events; false (and the stream closed) if it cannot be followed. */
    const follow = async (node: DevnetNodeState): Promise<boolean> => {
      const connected = new Set<string>()
      const asReady = (): NodeProbe => ({ ready: true, readyDetail: '/ready 200', connected: [...connected] })
      const own = new AbortController()
      const streamSignal = AbortSignal.any([signal, own.signal])
      let ended = false
      try {
        await followEvents<{ type?: string; peerId?: string }>(
          node.apiUrl,
          streamSignal,
          (ev) => {
            if (typeof ev.peerId !== 'string') return
            if (ev.type === 'peer:connected') connected.add(ev.peerId)
            else if (ev.type === 'peer:disconnected') connected.delete(ev.peerId)
            else return
            if (following.get(node.name) === connected) record(node, asReady())
          },
          () => {
            ended = true
            if (following.get(node.name) === connected) following.delete(node.name)
          },
        )
      } catch {
        return false
      }
      // Who connected before the stream opened.
      const snapshot = await probeNode(node.apiUrl, { timeoutMs: LOOK_TIMEOUT_MS, signal })
      if (!snapshot.ready || ended) {
        own.abort()
        return false
      }
      for (const p of snapshot.connected) connected.add(p)
      following.set(node.name, connected)
      record(node, asReady())
      return true
    }

    const watch = async (node: DevnetNodeState) => {
      while (!settled) {
        if (!nodeRunning(node.pid, node.dataDir)) {
          // A child of this process: its exit event brings the status (and ends the wait).
          if (o.children?.has(node.name) && !exits.has(node.name)) await sleep(100, undefined, { signal })
          if (!settled) finish(await o.exitedError(node, exits.get(node.name)))
          return
        }
        if (!following.has(node.name)) {
          const probe = await probeNode(node.apiUrl, { timeoutMs: LOOK_TIMEOUT_MS, signal })
          if (settled) return
          record(node, probe)
          if (probe.ready && !settled) await follow(node)
        }
        if (!settled) await sleep(o.pollMs, undefined, { signal })
      }
    }
    for (const node of o.targets)
      watch(node).catch((err: unknown) => {
        if (!settled && !(stop.signal.aborted && (err as Error).name === 'AbortError')) finish(err)
      })
  })
}

function meshed(l: NodeLook): boolean {
  return l.probe.ready && l.missing.length === 0
}

function neverAnswered(node: DevnetNodeState): NodeLook {
  return {
    node,
    probe: { ready: false, readyDetail: 'not looked at yet', connected: [] },
    expected: 0,
    missing: [],
  }
}
