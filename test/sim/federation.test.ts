import * as dagCbor from '@ipld/dag-cbor'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Block, chainId, cidFor, createSignedBlock, DAG_CBOR } from '../../src/dag/index.js'
import {
  blocksTopic,
  createHost,
  encodeAnnouncement,
  type IcnLibp2p,
  libp2pKeyFor,
} from '../../src/network/index.js'
import {
  connectedPeers,
  type FedNode,
  getJson,
  hasBlock,
  makeFederation,
  metric,
  putValue,
  Signer,
  type TestFederation,
  waitFor,
} from '../helpers/federation.js'
import { killAll, removeTempDirs } from '../helpers/process.js'

/**
 * A federation of three real node processes on 127.0.0.1, plus two member keys the test holds itself: `rogue`
 * (sends invalid gossip) and `twin` (equivocates). Both are listed in the genesis, so the nodes let them in.
 */
const rogue = Signer.generate()
const twin = Signer.generate()
let fed: TestFederation
let nodes: FedNode[]
const hosts: IcnLibp2p[] = []

beforeAll(async () => {
  fed = await makeFederation({ nodes: 3, extra: [rogue, twin], parameters: { maxMessageBytes: 65_536 } })
  nodes = fed.nodes
  await Promise.all(nodes.map((_, i) => fed.start(i)))
  await waitFor('a connected mesh', async () => {
    const counts = await Promise.all(nodes.map(connectedPeers))
    return counts.every((c) => c === nodes.length - 1)
  })
}, 90_000)

afterAll(async () => {
  for (const h of hosts) await Promise.resolve(h.stop()).catch(() => {})
  await killAll()
  await removeTempDirs()
})

/** A libp2p host holding one of the test's member keys, connected to `node` and subscribed to the topic. */
async function memberHost(signer: Signer, node: FedNode): Promise<IcnLibp2p> {
  const topic = blocksTopic(fed.federation.id)
  const host = await createHost({
    privateKey: libp2pKeyFor(signer),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    allowed: new Set(nodes.map((n) => n.peerId)),
    topic,
  })
  hosts.push(host)
  await host.start()
  host.services.pubsub.subscribe(topic)
  await host.dial(multiaddr(node.addr))
  await waitFor('the node in the gossip mesh', async () =>
    host.services.pubsub.getSubscribers(topic).some((p) => p.toString() === node.peerId),
  )
  return host
}

function block(signer: Signer, seq: number, prev: Block | null, body: unknown): Block {
  const b = createSignedBlock(signer, {
    type: 'icn.value/v1',
    chain: chainId(signer.did, 'node'),
    seq,
    prev: prev ? prev.cid : null,
    ts: Date.now(),
    body,
  })
  return { cid: b.cid, bytes: b.bytes }
}

describe('replication', () => {
  it('puts a block written on any node on every node', async () => {
    const cids: string[] = []
    for (const [i, n] of nodes.entries()) cids.push(await putValue(n, { from: n.name, i }))
    for (const cid of cids)
      for (const n of nodes) await waitFor(`${cid} on ${n.name}`, () => hasBlock(n, cid), 10_000)
    const heads = await Promise.all(nodes.map((n) => getJson(`${n.api}/v1/dag/chains`)))
    expect(heads[1]).toEqual(heads[0])
    expect(heads[2]).toEqual(heads[0])
  })

  it('streams what arrives on /v1/events, with the block and the federation peer it came from', async () => {
    const ctl = new AbortController()
    const res = await fetch(`${nodes[2]!.api}/v1/events`, { signal: ctl.signal })
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/)
    const reader = res.body!.getReader()
    const cid = await putValue(nodes[0]!, { watched: true })
    let text = ''
    await waitFor('the block event', async () => {
      const { value } = await reader.read()
      text += new TextDecoder().decode(value)
      return text.includes(cid)
    })
    ctl.abort()
    const line = text.split('\n').find((l) => l.startsWith('data:') && l.includes(cid))!
    const event = JSON.parse(line.slice(5))
    expect(event).toMatchObject({ type: 'block', cid, seq: expect.any(Number) })
    // Which route it took is the mesh's choice: by gossip from the writer or forwarded by the other node, or
    // by anti-entropy; what a user relies on is that it came from a node of the federation.
    expect(['gossip', 'sync']).toContain(event.origin)
    expect([nodes[0]!.peerId, nodes[1]!.peerId]).toContain(event.peer)
  })

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

describe('bad gossip', () => {
  it('finds equivocation, keeps it as evidence on every node and streams it', async () => {
    const host = await memberHost(twin, nodes[0]!)
    const topic = blocksTopic(fed.federation.id)
    const a = block(twin, 0, null, { version: 'a' })
    const b = block(twin, 0, null, { version: 'b' })
    await host.services.pubsub.publish(topic, encodeAnnouncement([a]))
    for (const n of nodes) await waitFor(`first block on ${n.name}`, () => hasBlock(n, a.cid.toString()))
    await host.services.pubsub.publish(topic, encodeAnnouncement([b]))
    for (const n of nodes)
      await waitFor(`evidence on ${n.name}`, async () => {
        const { evidence } = await getJson(`${n.api}/v1/dag/evidence`)
        return evidence.some(
          (e: { second: string; first: string }) =>
            e.first === a.cid.toString() && e.second === b.cid.toString(),
        )
      })
    expect(await metric(nodes[0]!, 'icn_dag_equivocations_total{source="gossip"}')).toBeGreaterThanOrEqual(1)
    await host.stop()
  })

  it('rejects invalid messages, penalises the sender and carries on', async () => {
    const host = await memberHost(rogue, nodes[0]!)
    const topic = blocksTopic(fed.federation.id)
    const before = (await getJson(`${nodes[0]!.api}/v1/dag/stats`)).blocks
    const good = block(rogue, 0, null, { fine: true })
    // Bad signature: a valid block whose signature bytes are flipped (so its CID still matches its bytes).
    const decoded = dagCbor.decode(good.bytes) as { sig: Uint8Array }
    const sig = Uint8Array.from(decoded.sig)
    sig[0]! ^= 0xff
    const tamperedBytes = dagCbor.encode({ ...decoded, sig })
    const badSig: Block = { cid: cidFor(DAG_CBOR, tamperedBytes), bytes: tamperedBytes }
    // Bad CID: the bytes of one block under the CID of another.
    const badCid: Block = { cid: block(rogue, 0, null, { other: 1 }).cid, bytes: good.bytes }
    // Unknown author: a well-signed block by a key the federation does not list.
    const stranger = block(Signer.generate(), 0, null, { who: 'nobody' })
    const cases: [string, Uint8Array][] = [
      ['bad_signature', encodeAnnouncement([badSig])],
      ['bad_cid', encodeAnnouncement([badCid])],
      ['unknown_author', encodeAnnouncement([stranger])],
      ['oversized', encodeAnnouncement([block(rogue, 0, null, { pad: 'x'.repeat(70_000) })])],
      ['malformed', new TextEncoder().encode('not cbor at all')],
    ]
    for (const [, data] of cases) await host.services.pubsub.publish(topic, data)
    for (const [reason] of cases)
      await waitFor(
        `a ${reason} rejection on node1`,
        async () => (await metric(nodes[0]!, `icn_gossip_rejected_total{reason="${reason}"}`)) >= 1,
      )
    const rogueScore = await waitFor('a negative score for the sender', async () => {
      const { peers } = await getJson(`${nodes[0]!.api}/v1/peers`)
      const p = peers.find((x: { did: string }) => x.did === rogue.did)
      return p && p.score < 0 ? p.score : undefined
    })
    expect(rogueScore).toBeLessThan(0)
    expect((await getJson(`${nodes[0]!.api}/v1/dag/stats`)).blocks).toBe(before)
    for (const n of nodes) expect(await hasBlock(n, badSig.cid.toString())).toBe(false)
    // The network is unaffected: a block written now still reaches every node.
    const cid = await putValue(nodes[1]!, { after: 'attack' })
    for (const n of nodes) await waitFor(`${cid} on ${n.name}`, () => hasBlock(n, cid))
    await host.stop()
  })
})
