/**
 * One plain libp2p node for the network baseline (bench/net-baseline.ts): TCP on 127.0.0.1, Noise, Yamux,
 * identify, ping and gossipsub with its default options (StrictSign), subscribed to one topic. No ICN logic.
 * Forked by the parent with an IPC channel; `process.argv[2]` is this node's index.
 *
 * It reports its address, dials what the parent sends, reports its status on request, publishes on command and
 * reports every message it receives (id and receive time, batched every 50 ms). It exits on 'stop' and when the
 * parent goes away (IPC 'disconnect'), so that no node outlives a crashed parent.
 */
import '../src/polyfill.js'
import { randomFillSync } from 'node:crypto'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { PeerId } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import {
  HEADER_BYTES,
  type ParentToPeer,
  type PeerStatus,
  type PeerToParent,
  TOPIC,
  wallClock,
} from './net-baseline.js'

const REPORT_EVERY_MS = 50
const DIAL_ATTEMPTS = 5
const DIAL_RETRY_MS = 250
const STOP_TIMEOUT_MS = 3000

const index = Number(process.argv[2])
if (!process.send || !Number.isSafeInteger(index)) {
  process.stderr.write('net-peer: run me through bench/net-baseline.ts (child_process.fork with an index)\n')
  process.exit(2)
}

type Pubsub = {
  subscribe(topic: string): void
  publish(topic: string, data: Uint8Array): Promise<unknown>
  getSubscribers(topic: string): PeerId[]
  getMeshPeers(topic: string): string[]
  addEventListener(type: 'message', fn: (ev: CustomEvent<{ topic: string; data: Uint8Array }>) => void): void
}

let node: Libp2p | undefined
let pubsub: Pubsub | undefined
let dialTargets: PeerId[] = []
let stopping = false

// Receipts waiting to be reported: two parallel arrays keep the IPC message small.
let pendingIds: number[] = []
let pendingAt: number[] = []
let reportTimer: NodeJS.Timeout | undefined

function send(msg: PeerToParent): void {
  // With a callback a failed write (parent gone: EPIPE) is reported there instead of thrown: shut down.
  if (process.connected && !stopping)
    process.send!(msg, undefined, {}, (err) => {
      if (err) void shutdown(0)
    })
}

function flushReceipts(): void {
  if (reportTimer) clearTimeout(reportTimer)
  reportTimer = undefined
  if (pendingIds.length === 0) return
  send({ type: 'received', ids: pendingIds, at: pendingAt })
  pendingIds = []
  pendingAt = []
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

async function shutdown(code: number): Promise<void> {
  if (stopping) return
  flushReceipts()
  stopping = true
  // libp2p.stop() can hang on a wedged connection: never outlive this deadline.
  setTimeout(() => process.exit(code), STOP_TIMEOUT_MS).unref()
  try {
    await node?.stop()
  } catch {
    // exiting anyway
  }
  if (process.connected) process.disconnect()
  process.exit(code)
}

process.on('disconnect', () => void shutdown(0))
// 'disconnect' may have fired while the imports above were loading, before anyone listened: check, and keep
// checking, so that a node never outlives its parent.
if (!process.connected) void shutdown(0)
setInterval(() => {
  if (!process.connected) void shutdown(0)
}, 1000).unref()
process.on('uncaughtException', (err) => {
  process.stderr.write(`net-peer ${index}: ${err.stack ?? err.message}\n`)
  send({ type: 'fatal', error: errorText(err) })
  void shutdown(1)
})

async function dialOne(target: { peerId: string; addr: string }): Promise<void> {
  const ma = multiaddr(target.addr)
  for (let attempt = 1; ; attempt++) {
    try {
      await node!.dial(ma)
      return
    } catch (err) {
      if (attempt >= DIAL_ATTEMPTS || stopping) {
        process.stderr.write(`net-peer ${index}: dial ${target.addr} failed: ${errorText(err)}\n`)
        return
      }
      await new Promise((r) => setTimeout(r, DIAL_RETRY_MS))
    }
  }
}

function status(): PeerStatus {
  const connections = node!.getConnections()
  const cpu = process.cpuUsage()
  return {
    index,
    connections: connections.length,
    peers: new Set(connections.map((c) => c.remotePeer.toString())).size,
    meshPeers: pubsub!.getMeshPeers(TOPIC).length,
    subscribers: pubsub!.getSubscribers(TOPIC).length,
    dialsConnected: dialTargets.every((p) => node!.getConnections(p).length > 0),
    rssBytes: process.memoryUsage.rss(),
    cpuMicros: cpu.user + cpu.system,
  }
}

function publish(id: number, bytes: number): void {
  const data = new Uint8Array(Math.max(bytes, HEADER_BYTES))
  randomFillSync(data, HEADER_BYTES)
  const view = new DataView(data.buffer)
  view.setUint32(0, id)
  view.setUint16(4, index)
  const at = wallClock()
  view.setFloat64(6, at)
  pubsub!.publish(TOPIC, data).then(
    () => send({ type: 'published', id, at }),
    (err: unknown) => send({ type: 'publish-failed', id, error: errorText(err) }),
  )
}

function onMessage(msg: ParentToPeer): void {
  if (stopping) return
  switch (msg.type) {
    case 'dial':
      dialTargets = msg.targets.map((t) => peerIdFromString(t.peerId))
      void Promise.all(msg.targets.map(dialOne))
      break
    case 'status':
      send({ type: 'status', req: msg.req, status: status() })
      break
    case 'publish':
      publish(msg.id, msg.bytes)
      break
    case 'stop':
      void shutdown(0)
      break
  }
}

async function main(): Promise<void> {
  const created = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping(), pubsub: gossipsub() },
  })
  node = created
  if (stopping) {
    await created.stop()
    return
  }
  pubsub = created.services.pubsub as unknown as Pubsub
  pubsub.addEventListener('message', (ev) => {
    const at = wallClock()
    const { topic, data } = ev.detail
    if (topic !== TOPIC || data.length < HEADER_BYTES) return
    pendingIds.push(new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0))
    pendingAt.push(at)
    reportTimer ??= setTimeout(flushReceipts, REPORT_EVERY_MS)
  })
  pubsub.subscribe(TOPIC)
  process.on('message', (m) => onMessage(m as ParentToPeer))
  const addr = created.getMultiaddrs()[0]
  if (!addr) throw new Error('no listen address')
  send({ type: 'ready', index, peerId: created.peerId.toString(), addr: addr.toString() })
}

main().catch((err: unknown) => {
  process.stderr.write(
    `net-peer ${index}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  )
  send({ type: 'fatal', error: errorText(err) })
  void shutdown(1)
})
