import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connectedPeers,
  type FedNode,
  getJson,
  hasBlock,
  makeFederation,
  metric,
  putValue,
  type TestFederation,
  waitFor,
} from '../helpers/federation.js'
import { killAll, removeTempDirs } from '../helpers/process.js'

/**
 * A federation of three real node processes on 127.0.0.1: what needs real processes (a SIGKILL) and real TCP (a
 * stranger refused by the gater). Replication, events and bad gossip run in process, on the harness
 * (test/e2e/federation.test.ts).
 */
let fed: TestFederation
let nodes: FedNode[]

beforeAll(async () => {
  fed = await makeFederation({ nodes: 3, parameters: { maxMessageBytes: 65_536 } })
  nodes = fed.nodes
  await Promise.all(nodes.map((_, i) => fed.start(i)))
  await waitFor('a connected mesh', async () => {
    const counts = await Promise.all(nodes.map(connectedPeers))
    return counts.every((c) => c === nodes.length - 1)
  })
}, 90_000)

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

describe('replication', () => {
  it('catches up a node that was SIGKILLed while the others wrote', async () => {
    await fed.kill(2)
    const written: string[] = []
    for (let i = 0; i < 300; i++) written.push(await putValue(nodes[i % 2]!, { while: 'down', i }))
    const restarted = await fed.start(2)
    const want = (await getJson(`${nodes[0]!.api}/v1/dag/chains`)).chains
    await waitFor(
      'node3 to hold every chain head',
      async () => {
        const got = (await getJson(`${restarted.api}/v1/dag/chains`)).chains
        return JSON.stringify(sortChains(got)) === JSON.stringify(sortChains(want))
      },
      30_000,
    )
    for (const cid of [written[0]!, written[150]!, written[299]!])
      expect(await hasBlock(restarted, cid)).toBe(true)
    expect(await metric(restarted, 'icn_sync_blocks_total')).toBeGreaterThanOrEqual(300)
    await waitFor('node3 reconnected to both', async () => (await connectedPeers(restarted)) === 2)
  }, 60_000)
})

function sortChains(chains: { chain: string }[]): unknown[] {
  return [...chains].sort((a, b) => (a.chain < b.chain ? -1 : 1))
}

describe('membership', () => {
  it('refuses a peer that is not a node of the federation', async () => {
    const stranger = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
    })
    const denied = (): Promise<number> =>
      metric(nodes[0]!, 'icn_peer_connections_denied_total{direction="inbound"}')
    const deniedBefore = await denied()
    try {
      await stranger.start()
      // The node drops it right after the handshake: the dial fails, or the connection is closed at once.
      await stranger.dial(multiaddr(nodes[0]!.addr), { signal: AbortSignal.timeout(5_000) }).then(
        (conn) => waitFor('the node to close the connection', async () => conn.status !== 'open'),
        () => {},
      )
      expect(stranger.getConnections().filter((c) => c.status === 'open')).toHaveLength(0)
      // It was tried, and refused by the node's gater.
      await waitFor('the refusal counted', async () => (await denied()) > deniedBefore)
      const { peers } = await getJson(`${nodes[0]!.api}/v1/peers`)
      expect(peers.map((p: { peerId: string }) => p.peerId)).not.toContain(stranger.peerId.toString())
    } finally {
      await stranger.stop()
    }
  })
})
