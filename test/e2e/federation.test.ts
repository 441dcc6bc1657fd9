import * as dagCbor from '@ipld/dag-cbor'
import { memory } from '@libp2p/memory'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Block, CID, chainId, cidFor, createSignedBlock, DAG_CBOR } from '../../src/dag/index.js'
import {
  blocksTopic,
  createHost,
  encodeAnnouncement,
  type IcnLibp2p,
  libp2pKeyFor,
} from '../../src/network/index.js'
import { getJson, Signer, waitFor } from '../helpers/federation.js'
import { type Harness, startHarness } from '../helpers/harness.js'

/**
 * A federation of three IcnNodes in this process (the in-process harness, over libp2p's memory transport), plus
 * two node keys the test holds itself: `rogue` (sends invalid gossip) and `twin` (equivocates). Both are listed
 * in the genesis, so the nodes let them in. Moved here from test/sim/federation.test.ts, which keeps what needs
 * real processes (SIGKILL) and real TCP (a stranger refused by the gater).
 */
const rogue = Signer.generate()
const twin = Signer.generate()
let h: Harness
const hosts: IcnLibp2p[] = []

beforeAll(async () => {
  h = await startHarness({ nodes: 3, extra: [rogue, twin], parameters: { maxMessageBytes: 65_536 } })
  await h.waitConnected()
})

afterAll(async () => {
  for (const host of hosts) await Promise.resolve(host.stop()).catch(() => {})
  await h?.close()
})

const api = (i: number): string => h.node(i).apiUrl
const has = (i: number, cid: string): Promise<boolean> => h.node(i).store.has(CID.parse(cid))
async function metric(i: number, series: string): Promise<number> {
  const text = await h.node(i).metrics.registry.metrics()
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  return 0
}
async function put(i: number, value: unknown): Promise<string> {
  return (await h.node(i).writer.appendValue(value)).cid.toString()
}

/** A libp2p host holding one of the test's node keys, connected to node `i` and subscribed to the topic. */
async function memberHost(signer: Signer, i: number): Promise<IcnLibp2p> {
  const topic = blocksTopic(h.federation.id)
  const host = await createHost({
    privateKey: libp2pKeyFor(signer),
    listen: [],
    allowed: new Set(h.nodes.map((n) => n.peerId)),
    topic,
    transports: [memory()],
  })
  hosts.push(host)
  await host.start()
  host.services.pubsub.subscribe(topic)
  await host.dial(multiaddr(h.nodes[i]!.addr))
  await waitFor('the node in the gossip mesh', async () =>
    host.services.pubsub.getSubscribers(topic).some((p) => p.toString() === h.nodes[i]!.peerId),
  )
  return host
}

function block(signer: Signer, seq: number, prev: Block | null, body: unknown): Block {
  const b = createSignedBlock(signer, {
    type: 'icn.value/v1',
    chain: chainId(signer.did, 'node'),
    seq,
    prev: prev ? prev.cid : null,
    ts: h.clock.now(),
    body,
  })
  return { cid: b.cid, bytes: b.bytes }
}

describe('replication', () => {
  it('puts a block written on any node on every node', async () => {
    const cids: string[] = []
    for (let i = 0; i < 3; i++) cids.push(await put(i, { from: i }))
    for (const cid of cids) await h.waitForBlock(cid)
    const heads = await Promise.all([0, 1, 2].map((i) => getJson(`${api(i)}/v1/dag/chains`)))
    expect(heads[1]).toEqual(heads[0])
    expect(heads[2]).toEqual(heads[0])
  })

  it('streams what arrives on /v1/events, with the block and the federation peer it came from', async () => {
    const ctl = new AbortController()
    const res = await fetch(`${api(2)}/v1/events`, { signal: ctl.signal })
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/)
    const reader = res.body!.getReader()
    const cid = await put(0, { watched: true })
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
    expect([h.nodes[0]!.peerId, h.nodes[1]!.peerId]).toContain(event.peer)
  })
})

describe('bad gossip', () => {
  it('finds equivocation, keeps it as evidence on every node and streams it', async () => {
    const host = await memberHost(twin, 0)
    const topic = blocksTopic(h.federation.id)
    const a = block(twin, 0, null, { version: 'a' })
    const b = block(twin, 0, null, { version: 'b' })
    await host.services.pubsub.publish(topic, encodeAnnouncement([a]))
    await h.waitForBlock(a.cid)
    const sent = h.clock.now()
    await host.services.pubsub.publish(topic, encodeAnnouncement([b]))
    for (let i = 0; i < 3; i++)
      await waitFor(`evidence on node ${i}`, async () => {
        const { evidence } = await getJson(`${api(i)}/v1/dag/evidence`)
        return evidence.some(
          (e: { second: string; first: string }) =>
            e.first === a.cid.toString() && e.second === b.cid.toString(),
        )
      })
    // the evidence is stamped with the nodes' injected clock (which runs behind the machine's)
    const { evidence } = await getJson(`${api(0)}/v1/dag/evidence`)
    const detectedAt = Date.parse(evidence[0].detectedAt)
    expect(detectedAt).toBeGreaterThanOrEqual(sent)
    expect(detectedAt).toBeLessThanOrEqual(h.clock.now())
    expect(await metric(0, 'icn_dag_equivocations_total{source="gossip"}')).toBeGreaterThanOrEqual(1)
    await host.stop()
  })

  it('rejects invalid messages, penalises the sender and carries on', async () => {
    const host = await memberHost(rogue, 0)
    const topic = blocksTopic(h.federation.id)
    const before = (await getJson(`${api(0)}/v1/dag/stats`)).blocks
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
        async () => (await metric(0, `icn_gossip_rejected_total{reason="${reason}"}`)) >= 1,
      )
    const rogueScore = await waitFor('a negative score for the sender', async () => {
      const { peers } = await getJson(`${api(0)}/v1/peers`)
      const p = peers.find((x: { did: string }) => x.did === rogue.did)
      return p && p.score < 0 ? p.score : undefined
    })
    expect(rogueScore).toBeLessThan(0)
    expect((await getJson(`${api(0)}/v1/dag/stats`)).blocks).toBe(before)
    for (let i = 0; i < 3; i++) expect(await has(i, badSig.cid.toString())).toBe(false)
    // The network is unaffected: a block written now still reaches every node.
    const cid = await put(1, { after: 'attack' })
    await h.waitForBlock(cid)
    await host.stop()
  })
})
