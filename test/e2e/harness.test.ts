import * as dagCbor from '@ipld/dag-cbor'
import { afterEach, describe, expect, it } from 'vitest'
import { type Harness, startHarness } from '../helpers/harness.js'

let h: Harness | undefined

afterEach(async () => {
  await h?.close()
  h = undefined
})

describe('in-process harness', () => {
  it('meshes three nodes over the memory transport, replicates a block, and heals a partition', async () => {
    h = await startHarness({ nodes: 3 })
    await h.waitConnected()
    const at = h.clock.now()
    const { cid } = await h.node(0).writer.appendValue({ hello: 'harness' })
    await h.waitForBlock(cid)
    // the block's time is the shared manual clock's, not the machine's
    const got = await h.node(2).store.get(cid)
    expect((dagCbor.decode(got) as { ts: number }).ts).toBe(at)

    await h.partition(2)
    expect(h.running()).toEqual([0, 1])
    const second = await h.node(1).writer.appendValue({ while: 'node3 is away' })
    await h.waitForBlock(second.cid)
    await h.heal(2)
    // the restarted node catches up by anti-entropy on connect
    await h.waitForBlock(second.cid)
    expect(await h.node(2).store.has(cid)).toBe(true)
  })

  it('runs the nodes on PostgreSQL, a database each', async () => {
    h = await startHarness({ nodes: 2, store: 'postgres' })
    expect(h.node(0).store.backend).toBe('postgres')
    await h.waitConnected()
    const { cid } = await h.node(1).writer.appendValue({ on: 'postgres' })
    await h.waitForBlock(cid)
  })
})

/** `peers` requests node i answered (the server side of block exchange). */
async function peersServed(h: Harness, i: number): Promise<number> {
  const { values } = await h.node(i).metrics.exchangeDuration.get()
  return values
    .filter((v) => v.metricName?.endsWith('_count') && v.labels.op === 'peers' && v.labels.role === 'server')
    .reduce((n, v) => n + v.value, 0)
}

describe('address discovery on connect', () => {
  it('a node bootstrapped to one peer learns the addresses of the others from it and connects to them', async () => {
    // node3 knows only node1's address; node1 and node2 know each other.
    h = await startHarness({ nodes: 3, bootstrap: (i) => (i === 2 ? [0] : i === 0 ? [1] : [0]) })
    await h.waitConnected()
    expect(await peersServed(h, 0)).toBeGreaterThan(0)
  })

  it('nodes bootstrapped to every other node connect without asking anyone for addresses', async () => {
    h = await startHarness({ nodes: 3 })
    await h.waitConnected()
    const { cid } = await h.node(0).writer.appendValue({ after: 'connecting' })
    await h.waitForBlock(cid) // the on-connect rounds have run
    for (const i of [0, 1, 2]) expect(await peersServed(h, i)).toBe(0)
  })
})
