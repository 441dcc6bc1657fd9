/**
 * `waitForMesh`, the wait of `devnet up` and `restart`, against stand-in nodes: each a child process (whose
 * command line names its data folder, as a node's does) and an HTTP server in this process answering `/ready`
 * and `/v1/peers` as the test says. The point of each case: a node that does not answer does not hold back the
 * news of the others; the wait ends on the first looks that find every node ready and connected; a node that
 * exits or a timeout ends it with the error the devnet builds.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { DevnetNodeState } from '../../../src/devnet/state.js'
import { type NodeLook, waitForMesh } from '../../../src/devnet/wait.js'

interface FakeNode {
  state: DevnetNodeState
  proc: ChildProcess
  server: http.Server
  /** What the node answers: 503 until ready; connected peer ids. */
  ready: boolean
  connected: string[]
  /** While set, /ready requests wait for it. */
  hold?: Promise<void>
  /** /ready requests received. */
  looks: number
  /** /v1/peers requests received. */
  peersAsked: number
  /** Open /v1/events streams (only with `events`; else /v1/events answers 404, as a node without it would). */
  streams: http.ServerResponse[]
  /** Send a Server-Sent Event to its open streams. */
  emit: (event: Record<string, unknown>) => void
}

const nodes: FakeNode[] = []

afterEach(async () => {
  for (const n of nodes.splice(0)) {
    n.proc.kill('SIGKILL')
    n.server.closeAllConnections()
    await new Promise((r) => n.server.close(r))
  }
})

async function fakeNode(name: string, opts: { events?: boolean } = {}): Promise<FakeNode> {
  const dataDir = `/tmp/icn-wait-test-${process.pid}-${name}`
  // The data folder is an argument, as in `icn node start --data-dir D`: nodeRunning() looks for it.
  const proc = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', dataDir], { stdio: 'ignore' })
  await once(proc, 'spawn')
  const n: FakeNode = {
    proc,
    ready: false,
    connected: [],
    looks: 0,
    peersAsked: 0,
    streams: [],
    emit: (event) => {
      for (const r of n.streams) r.write(`data: ${JSON.stringify(event)}\n\n`)
    },
    server: http.createServer(async (req, res) => {
      if (req.url === '/ready') {
        n.looks++
        if (n.hold) await n.hold
        res.writeHead(n.ready ? 200 : 503).end()
      } else if (req.url === '/v1/events' && opts.events) {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(': open\n\n')
        n.streams.push(res)
      } else if (req.url === '/v1/peers') {
        n.peersAsked++
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ peers: n.connected.map((peerId) => ({ peerId, connected: true })) }))
      } else res.writeHead(404).end()
    }),
    state: undefined as unknown as DevnetNodeState,
  }
  n.server.listen(0, '127.0.0.1')
  await once(n.server, 'listening')
  const port = (n.server.address() as AddressInfo).port
  n.state = {
    name,
    dataDir,
    did: `did:key:z6Mk${name}`,
    peerId: `peer-${name}`,
    apiUrl: `http://127.0.0.1:${port}`,
    apiKey: 'k',
    p2pAddr: `/ip4/127.0.0.1/tcp/1/p2p/peer-${name}`,
    pid: proc.pid ?? null,
    args: [],
    log: `${dataDir}/node.log`,
  }
  nodes.push(n)
  return n
}

/** Resolves once `cond` holds, looked at every few milliseconds (the test's timeout bounds the wait). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 2))
}

function meshAll(all: FakeNode[]): void {
  for (const n of all) {
    n.ready = true
    n.connected = all.filter((o) => o !== n).map((o) => o.state.peerId)
  }
}

function options(all: FakeNode[], extra: Partial<Parameters<typeof waitForMesh>[0]> = {}) {
  const events: string[] = []
  return {
    events,
    opts: {
      targets: all.map((n) => n.state),
      all: all.map((n) => n.state),
      timeoutMs: 60_000,
      pollMs: 10,
      onReady: (node: DevnetNodeState) => events.push(`ready ${node.name}`),
      onMesh: (message: string) => events.push(message),
      exitedError: async (node: DevnetNodeState, how?: string) => new Error(`${node.name} exited (${how})`),
      timeoutError: async (pending: NodeLook[]) =>
        new Error(`timeout: ${pending.map((p) => `${p.node.name} ${p.probe.readyDetail}`).join(', ')}`),
      ...extra,
    },
  }
}

describe('waitForMesh', () => {
  it('resolves once every node is ready and connected to all the others, reporting each step', async () => {
    const all = await Promise.all(['node1', 'node2', 'node3'].map((n) => fakeNode(n)))
    const { events, opts } = options(all, {
      onReady: (node) => {
        events.push(`ready ${node.name}`)
        // Once all have answered ready (not yet connected), they connect.
        if (events.filter((e) => e.startsWith('ready')).length === all.length) meshAll(all)
      },
    })
    all[0]!.ready = all[1]!.ready = all[2]!.ready = true
    const ms = await waitForMesh(opts)
    expect(ms).toBeGreaterThan(0)
    expect(events.filter((e) => e.startsWith('ready')).sort()).toEqual([
      'ready node1',
      'ready node2',
      'ready node3',
    ])
    expect(events.at(-1)).toBe('mesh 3/3 nodes connected')
  })

  it('twelve nodes, followed by their streams under the caller’s signal, raise no listener warning', async () => {
    // Each node has a look, a stream or a pause on the wait's signal: Node warns past 10 listeners on one
    // signal ("possible EventTarget memory leak"), on the terminal of whoever ran `icn devnet up --nodes 12`.
    const names = Array.from({ length: 12 }, (_, i) => `node${i + 1}`)
    const all = await Promise.all(names.map((n) => fakeNode(n, { events: true })))
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`)
    process.on('warning', onWarning)
    try {
      for (const n of all) n.ready = true
      const { events, opts } = options(all, { signal: new AbortController().signal })
      const done = waitForMesh(opts)
      await until(() => all.every((n) => n.streams.length > 0))
      meshAll(all)
      for (const n of all)
        for (const peerId of n.connected) n.emit({ type: 'peer:connected', peerId, did: 'x', at: 1 })
      await done
      expect(events.at(-1)).toBe('mesh 12/12 nodes connected')
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r))
      expect(warnings).toEqual([])
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('a node that does not answer does not hold back the looks at the others', async () => {
    const all = await Promise.all(['node1', 'node2', 'node3'].map((n) => fakeNode(n)))
    let release!: () => void
    all[2]!.hold = new Promise<void>((r) => {
      release = r
    })
    meshAll(all)
    let heldLooks = 0
    const { events, opts } = options(all, {
      onReady: (node) => {
        events.push(`ready ${node.name}`)
        // node1 and node2 are seen ready, and looked at again, while node3's first look is still unanswered.
        if (node.name !== 'node3' && events.filter((e) => e.startsWith('ready')).length === 2) {
          const looksBefore = all[0]!.looks
          const again = setInterval(() => {
            if (all[0]!.looks > looksBefore + 2) {
              clearInterval(again)
              events.push('node1 looked at again while node3 held')
              heldLooks = all[2]!.looks
              release()
            }
          }, 5)
        }
      },
    })
    await waitForMesh(opts)
    expect(events.indexOf('ready node1')).toBeLessThan(events.indexOf('ready node3'))
    expect(events.indexOf('ready node2')).toBeLessThan(events.indexOf('ready node3'))
    expect(events.indexOf('node1 looked at again while node3 held')).toBeLessThan(
      events.indexOf('ready node3'),
    )
    expect(heldLooks).toBe(1)
    expect(events.at(-1)).toBe('mesh 3/3 nodes connected')
  })

  it('once a node is ready, its event stream says who connects: it is not asked again until the last look', async () => {
    const all = await Promise.all(['node1', 'node2', 'node3'].map((n) => fakeNode(n, { events: true })))
    for (const n of all) n.ready = true
    // node1 is connected to node2 from the start (the snapshot taken once its stream is open shows it).
    all[0]!.connected = ['peer-node2']
    all[1]!.connected = ['peer-node1']
    const { events, opts } = options(all)
    const waiting = waitForMesh(opts)
    // Each node: one look (ready), then its stream, then one snapshot of its peers.
    await until(() => all.every((n) => n.streams.length === 1 && n.peersAsked === 2))
    meshAll(all) // what /v1/peers answers to the confirming look
    all[0]!.emit({ type: 'peer:connected', peerId: 'peer-node3', did: 'x', at: 1 })
    all[1]!.emit({ type: 'peer:connected', peerId: 'peer-node3', did: 'x', at: 1 })
    all[2]!.emit({ type: 'peer:connected', peerId: 'peer-node1', did: 'x', at: 1 })
    all[2]!.emit({ type: 'block', cid: 'b1', at: 1 }) // other events change nothing
    all[2]!.emit({ type: 'peer:connected', peerId: 'peer-node2', did: 'x', at: 1 })
    await waiting
    // Nobody was asked again while the events came (every 10 ms otherwise), only the one confirming look.
    expect(all.map((n) => n.peersAsked)).toEqual([3, 3, 3])
    expect(events.at(-1)).toBe('mesh 3/3 nodes connected')
  })

  it('a disconnect on the stream counts, and the confirming look is believed over the streams', async () => {
    const all = await Promise.all(['node1', 'node2'].map((n) => fakeNode(n, { events: true })))
    for (const n of all) n.ready = true
    const { events, opts } = options(all)
    let done = false
    const waiting = waitForMesh(opts).then(() => {
      done = true
    })
    await until(() => all.every((n) => n.streams.length === 1 && n.peersAsked === 2))
    all[0]!.emit({ type: 'peer:connected', peerId: 'peer-node2', did: 'x', at: 1 })
    all[0]!.emit({ type: 'peer:disconnected', peerId: 'peer-node2', did: 'x', at: 2 })
    all[1]!.emit({ type: 'peer:connected', peerId: 'peer-node1', did: 'x', at: 1 })
    await until(() => events.includes('mesh 1/2 nodes connected'))
    // The streams now say both are connected, but node2, looked at, says otherwise: not done yet.
    all[0]!.connected = ['peer-node2']
    all[0]!.emit({ type: 'peer:connected', peerId: 'peer-node2', did: 'x', at: 3 })
    // The streams' state is reported, the confirming look finds node2 unconnected, and that is reported.
    await until(() => {
      const streamsSaid = events.indexOf('mesh 2/2 nodes connected')
      return streamsSaid >= 0 && events.lastIndexOf('mesh 1/2 nodes connected') > streamsSaid
    })
    expect(all[1]!.peersAsked).toBe(3)
    expect(done).toBe(false)
    all[1]!.connected = ['peer-node1']
    all[1]!.emit({ type: 'peer:connected', peerId: 'peer-node1', did: 'x', at: 4 })
    await waiting
    expect(events.at(-1)).toBe('mesh 2/2 nodes connected')
  })

  it('one node (a restart) reports how many of its peers it is connected to', async () => {
    const all = await Promise.all(['node1', 'node2', 'node3'].map((n) => fakeNode(n)))
    all[2]!.ready = true
    all[2]!.connected = ['peer-node1']
    const { events, opts } = options(all, {
      targets: [all[2]!.state],
      onMesh: (message) => {
        events.push(message)
        if (message === 'node3 connected to 1/2 peers') all[2]!.connected = ['peer-node1', 'peer-node2']
      },
    })
    await waitForMesh(opts)
    expect(events).toEqual(['ready node3', 'node3 connected to 1/2 peers', 'node3 connected to 2/2 peers'])
  })

  it('a node that exits ends the wait with its exit status', async () => {
    const all = await Promise.all(['node1', 'node2'].map((n) => fakeNode(n)))
    const children = new Map([['node2', all[1]!.proc]])
    const { opts } = options(all, { children })
    const waiting = waitForMesh(opts)
    all[1]!.proc.kill('SIGKILL')
    await expect(waiting).rejects.toThrow('node2 exited (signal SIGKILL)')
  })

  it('a node not running at all (no child of this process) ends the wait', async () => {
    const all = await Promise.all(['node1', 'node2'].map((n) => fakeNode(n)))
    all[1]!.proc.kill('SIGKILL')
    await once(all[1]!.proc, 'exit')
    const { opts } = options(all)
    await expect(waitForMesh(opts)).rejects.toThrow('node2 exited (undefined)')
  })

  it('times out with the latest look at each node still pending', async () => {
    const all = await Promise.all(['node1', 'node2'].map((n) => fakeNode(n)))
    all[0]!.ready = true
    const { opts } = options(all, { timeoutMs: 300 })
    await expect(waitForMesh(opts)).rejects.toThrow('timeout: node1 /ready 200, node2 /ready 503')
  })

  it('stops at once when the caller aborts', async () => {
    const all = await Promise.all(['node1'].map((n) => fakeNode(n)))
    const ac = new AbortController()
    const { opts } = options(all, { signal: ac.signal })
    const waiting = waitForMesh(opts)
    while (all[0]!.looks < 2) await new Promise((r) => setTimeout(r, 5))
    ac.abort(new Error('stopped by the user'))
    await expect(waiting).rejects.toThrow('stopped by the user')
  })
})
