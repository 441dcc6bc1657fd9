import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { type Block, chainId, createSignedBlock, SqliteBlockStore } from '../../../src/dag/index.js'
import {
  InlineVerifier,
  type SignatureCheck,
  type SignatureVerifier,
  Signer,
} from '../../../src/identity/index.js'

/** Test fixture: the inline verifier, answering only after `ms` — as a busy worker pool might. */
class SlowVerifierFixture implements SignatureVerifier {
  private readonly inline = new InlineVerifier()
  constructor(private readonly ms: number) {}
  async verifyMany(checks: SignatureCheck[]): Promise<boolean[]> {
    await new Promise((r) => setTimeout(r, this.ms))
    return this.inline.verifyMany(checks)
  }
  async close(): Promise<void> {}
}

/**
 * The block as a peer would send it: the same bytes in another array. The store verifies it (a block whose very
 * bytes this process signed is not verified again), so the slow verifier is in the way, as these tests need.
 */
function received(b: Block): Block {
  return { cid: b.cid, bytes: Uint8Array.from(b.bytes) }
}

let dir: string
let store: SqliteBlockStore

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-fifo-'))
  store = new SqliteBlockStore({ path: join(dir, 'db') }, { verifier: new SlowVerifierFixture(30) })
  await store.open()
})

afterEach(async () => {
  await store.close()
  await rm(dir, { recursive: true, force: true })
})

it('commits batches in call order, also when a batch in between fails before its commit', async () => {
  const s = Signer.generate()
  const chain = chainId(s.did, 'c')
  const b0 = createSignedBlock(s, {
    type: 'icn.value/v1',
    chain,
    seq: 0,
    prev: null,
    ts: 1,
    body: { inline: 0 },
  })
  const b1 = createSignedBlock(s, {
    type: 'icn.value/v1',
    chain,
    seq: 1,
    prev: b0.cid,
    ts: 2,
    body: { inline: 1 },
  })
  const bad = { cid: b1.cid, bytes: b0.bytes } // CID_MISMATCH, found before any signature check
  const first = store.putMany([received(b0)])
  const middle = store.putMany([bad])
  const last = store.putMany([received(b1)])
  await expect(middle).rejects.toMatchObject({ code: 'CID_MISMATCH' })
  expect((await first)[0]!.status).toBe('stored')
  expect((await last)[0]!.status).toBe('stored')
  expect((await store.chainHead(chain))?.seq).toBe(1)
})

it('lets the event loop run while it decodes a large batch, and still stores all of it', async () => {
  const s = Signer.generate()
  const chain = chainId(s.did, 'big')
  const blocks: Block[] = []
  for (let seq = 0; seq < 512; seq++)
    blocks.push(
      createSignedBlock(s, {
        type: 'icn.value/v1',
        chain,
        seq,
        prev: seq === 0 ? null : blocks[seq - 1]!.cid,
        ts: seq,
        body: { seq },
      }),
    )
  let decoded = 0
  let decodedWhenOthersRan = -1
  const put = store.putMany(blocks, { inspect: () => decoded++ })
  // Queued after the call: it runs at the first point where the store gives the event loop back.
  setImmediate(() => {
    decodedWhenOthersRan = decoded
  })
  await put
  expect(decodedWhenOthersRan).toBeGreaterThan(0)
  expect(decodedWhenOthersRan).toBeLessThan(blocks.length)
  expect((await store.chainHead(chain))?.seq).toBe(511)
})
