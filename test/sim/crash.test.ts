/**
 * The durability promise: a write the node acknowledged (201) survives the node being killed with SIGKILL
 * while other writes are in flight, the store stays valid, and the node's chain has no gap and keeps growing
 * after a restart on the same data folder.
 */
import { CarReader } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import type { CID } from 'multiformats/cid'
import { afterAll, afterEach, expect, it } from 'vitest'
import {
  initDataDir,
  killAll,
  type RunningNode,
  removeTempDirs,
  startNode,
  tempDir,
} from '../helpers/process.js'

const WRITERS = 8
const CYCLES = 3
/** Kill after this many acknowledged writes in a cycle, or after WRITE_MS, whichever comes first. */
const ACKS_PER_CYCLE = 300
const WRITE_MS = 1_500

interface Value {
  cycle: number
  writer: number
  i: number
}

afterEach(killAll)
afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

function auth(node: RunningNode): Record<string, string> {
  return { authorization: `Bearer ${node.info.apiKey}` }
}

/** POST values until `stop()` says so or the node goes away; record each one acknowledged with a 201. */
async function writer(
  node: RunningNode,
  cycle: number,
  w: number,
  acked: Map<string, unknown>,
  stop: () => boolean,
): Promise<void> {
  for (let i = 0; !stop(); i++) {
    const value: Value = { cycle, writer: w, i }
    let res: Response
    try {
      res = await fetch(`${node.info.api}/v1/dag/blocks`, {
        method: 'POST',
        headers: { ...auth(node), 'content-type': 'application/json' },
        body: JSON.stringify({ value }),
      })
    } catch {
      return // the node is gone
    }
    if (res.status !== 201) {
      await res.body?.cancel()
      if (res.status >= 500) return
      throw new Error(`unexpected ${res.status} from a write`)
    }
    let cid: string
    try {
      cid = ((await res.json()) as { cid: string }).cid
    } catch {
      return // killed between the status line and the body: not acknowledged as far as the client knows
    }
    acked.set(cid, value)
  }
}

/**
 * The acknowledged values (those from index `from` on) are there, the store verifies, and the chain runs unbroken
 * from its head to seq 0. Returns the head's seq.
 */
async function checkNode(node: RunningNode, acked: Map<string, unknown>, from = 0): Promise<number> {
  const { api, did } = node.info
  const entries = [...acked].slice(from)
  for (let k = 0; k < entries.length; k += 64) {
    await Promise.all(
      entries.slice(k, k + 64).map(async ([cid, value]) => {
        const res = await fetch(`${api}/v1/dag/values/${cid}`)
        expect(res.status, `acknowledged ${cid} is missing`).toBe(200)
        expect(await res.json()).toMatchObject({ cid, author: did, value })
      }),
    )
  }

  const verify = await fetch(`${api}/v1/dag/verify`, { method: 'POST', headers: auth(node) })
  expect(verify.status).toBe(200)
  const report = (await verify.json()) as { checked: number; bad: unknown[] }
  expect(report.bad).toEqual([])

  const info = (await (await fetch(`${api}/v1/node`)).json()) as { head: { seq: number; cid: string } | null }
  if (!info.head) {
    expect(acked.size).toBe(0)
    return -1
  }
  // Export what the head reaches and walk its prev links: every seq from head.seq down to 0, exactly once.
  const car = await fetch(`${api}/v1/dag/export?root=${info.head.cid}`)
  expect(car.status).toBe(200)
  const reader = await CarReader.fromBytes(new Uint8Array(await car.arrayBuffer()))
  const blocks = new Map<string, { seq: number; prev: CID | null }>()
  for await (const { cid, bytes } of reader.blocks()) blocks.set(cid.toString(), dagCbor.decode(bytes))
  let cid: string | null = info.head.cid
  let expected = info.head.seq
  let length = 0
  while (cid) {
    const block = blocks.get(cid)
    expect(block, `chain block ${cid} (seq ${expected}) is missing`).toBeDefined()
    expect(block!.seq).toBe(expected)
    expected--
    length++
    cid = block!.prev ? block!.prev.toString() : null
  }
  expect(expected).toBe(-1)
  expect(length).toBe(info.head.seq + 1)
  expect(length).toBeGreaterThanOrEqual(acked.size)
  // Small values only: the store holds the chain and nothing else.
  const stats = (await (await fetch(`${api}/v1/dag/stats`)).json()) as { blocks: number }
  expect(stats.blocks).toBe(length)
  expect(report.checked).toBe(length)
  return info.head.seq
}

it(`acknowledged writes survive kill -9 (${CYCLES} cycles of ${WRITERS} concurrent writers)`, async () => {
  const dir = await tempDir()
  await initDataDir(dir)
  const acked = new Map<string, unknown>()

  let ackedBefore = 0
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const node = await startNode(['--data-dir', dir])
    // The writes of the cycle just crashed (the final check below covers every cycle's again).
    await checkNode(node, acked, ackedBefore)
    ackedBefore = acked.size
    const started = Date.now()
    let killed = false
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(node, cycle, w, acked, () => killed))
    while (acked.size - ackedBefore < ACKS_PER_CYCLE && Date.now() - started < WRITE_MS)
      await new Promise((resolve) => setTimeout(resolve, 10))
    // Writes are still in flight: every writer loops until it sees the node gone.
    node.proc.kill('SIGKILL')
    const exit = await node.waitExit()
    killed = true
    expect(exit.signal).toBe('SIGKILL')
    await Promise.all(writers)
    expect(acked.size - ackedBefore, `cycle ${cycle} acknowledged nothing`).toBeGreaterThan(20)
  }

  // After the last crash: everything acknowledged is there, and the chain continues from its head.
  const node = await startNode(['--data-dir', dir])
  const head = await checkNode(node, acked)
  const res = await fetch(`${node.info.api}/v1/dag/blocks`, {
    method: 'POST',
    headers: { ...auth(node), 'content-type': 'application/json' },
    body: JSON.stringify({ value: { after: 'crashes' } }),
  })
  expect(res.status).toBe(201)
  const put = (await res.json()) as { cid: string; seq: number }
  expect(put.seq).toBe(head + 1)
  const after = (await (await fetch(`${node.info.api}/v1/node`)).json()) as { head: unknown }
  expect(after.head).toEqual({ seq: head + 1, cid: put.cid })
  const value = await fetch(`${node.info.api}/v1/dag/values/${put.cid}`)
  expect(await value.json()).toMatchObject({ seq: head + 1, value: { after: 'crashes' } })
  expect((await node.stop()).code).toBe(0)
}, 60_000)
