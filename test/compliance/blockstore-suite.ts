/**
 * The one compliance suite every BlockStore backend runs: round trips, every validation and chain rule with
 * its error code (and proof that a refused put changed nothing), equivocation evidence, chunked values,
 * atomic batches, pins and garbage collection, concurrency, abort and lifecycle.
 */
import { randomBytes } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type Block,
  type BlockStore,
  type CID,
  chainId,
  cidFor,
  createRawBlock,
  createSignedBlock,
  DAG_CBOR,
  decodeSignedBlock,
  decodeValue,
  encodeValue,
  MAX_BLOCK_BYTES,
  RAW,
  type SignedBlock,
  type SqlRow,
  type StoreComponents,
  VALUE_RECORD_TYPE,
} from '../../src/dag/index.js'
import { blockTag, Signer } from '../../src/identity/index.js'

export interface BlockStoreFactory {
  /** A fresh, open, empty store (with these components, e.g. a clock). */
  setup(components?: StoreComponents): Promise<BlockStore>
  /** Close the store and remove whatever backs it. Called once per test, also after the test closed it. */
  teardown(store: BlockStore): Promise<void>
}

/** A signed value block at `seq` of `chain`. */
export function valueBlock(
  signer: Signer,
  chain: string,
  seq: number,
  prev: CID | null,
  value: unknown = { seq },
): Block & { block: SignedBlock } {
  return createSignedBlock(signer, {
    type: VALUE_RECORD_TYPE,
    chain,
    seq,
    prev,
    ts: 1_700_000_000_000 + seq,
    body: encodeValue(value).body,
  })
}

/** `n` linked blocks of one chain, from `start` (linked to `prev`). */
export function chainOf(
  signer: Signer,
  chain: string,
  n: number,
  start = 0,
  prev: CID | null = null,
  tag = '',
): (Block & { block: SignedBlock })[] {
  const out: (Block & { block: SignedBlock })[] = []
  for (let i = 0; i < n; i++) {
    const b = valueBlock(signer, chain, start + i, prev, { seq: start + i, tag })
    out.push(b)
    prev = b.cid
  }
  return out
}

/** Sign arbitrary fields (no shape check), so a test can build blocks `createSignedBlock` would refuse. */
function signRaw(signer: Signer, unsigned: Record<string, unknown>): Block {
  const sig = signer.signWithDomain(blockTag(unsigned.type as string), dagCbor.encode(unsigned))
  const bytes = dagCbor.encode({ ...unsigned, sig })
  return { cid: cidFor(DAG_CBOR, bytes), bytes }
}

/** Re-encode a decoded record as a block with a correct CID. */
function reencode(record: Record<string, unknown>): Block {
  const bytes = dagCbor.encode(record)
  return { cid: cidFor(DAG_CBOR, bytes), bytes }
}

function sameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(Buffer.from(actual).equals(Buffer.from(expected))).toBe(true)
}

export function blockStoreTests(name: string, factory: BlockStoreFactory): void {
  describe(`BlockStore compliance: ${name}`, () => {
    let store: BlockStore
    let alice: Signer
    let bob: Signer
    let chainA: string

    beforeEach(async () => {
      store = await factory.setup()
      alice = Signer.generate()
      bob = Signer.generate()
      chainA = chainId(alice.did, 'main')
    })

    afterEach(async () => {
      await factory.teardown(store)
    })

    /** Put must throw `code`, and the store must be exactly as it was. */
    async function expectRefused(blocks: Block[], code: string): Promise<void> {
      const before = await store.stats()
      await expect(store.putMany(blocks)).rejects.toMatchObject({ code })
      expect(await store.stats()).toEqual(before)
    }

    /** The head is the last entry, and every entry links the one before it. */
    async function expectIntactChain(chain: string): Promise<void> {
      const head = await store.chainHead(chain)
      expect(head).toBeDefined()
      expect((await store.chainEntry(chain, head!.seq))?.equals(head!.cid)).toBe(true)
      expect(await store.chainEntry(chain, head!.seq + 1)).toBeUndefined()
      for (let seq = head!.seq; seq > 0; seq--) {
        const block = decodeSignedBlock(await store.get((await store.chainEntry(chain, seq))!))
        expect(block.seq).toBe(seq)
        expect(block.prev?.equals((await store.chainEntry(chain, seq - 1))!)).toBe(true)
      }
    }

    describe('round trip', () => {
      it('puts, gets, has and deletes a signed block', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        expect(await store.has(b0!.cid)).toBe(false)
        expect(await store.put(b0!)).toEqual({ cid: b0!.cid, status: 'stored' })
        expect(await store.has(b0!.cid)).toBe(true)
        sameBytes(await store.get(b0!.cid), b0!.bytes)
        await store.delete(b0!.cid)
        expect(await store.has(b0!.cid)).toBe(false)
        await expect(store.get(b0!.cid)).rejects.toMatchObject({ code: 'NOT_FOUND' })
        // deleting again is a no-op; the chain position stays known
        await store.delete(b0!.cid)
        expect((await store.chainEntry(chainA, 0))?.equals(b0!.cid)).toBe(true)
      })

      it('restores deleted bytes when the same block is put again (a duplicate)', async () => {
        const [b0, b1] = chainOf(alice, chainA, 2)
        await store.putMany([b0!, b1!])
        await store.delete(b0!.cid)
        expect(await store.put(b0!)).toEqual({ cid: b0!.cid, status: 'duplicate' })
        sameBytes(await store.get(b0!.cid), b0!.bytes)
      })

      it('get of a missing block throws NOT_FOUND', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        await expect(store.get(b0!.cid)).rejects.toMatchObject({
          code: 'NOT_FOUND',
          name: 'BlockNotFoundError',
        })
      })

      it('getMany yields the blocks asked for', async () => {
        const blocks = chainOf(alice, chainA, 3)
        await store.putMany(blocks)
        const got: Block[] = []
        for await (const b of store.getMany(blocks.map((x) => x.cid))) got.push(b)
        expect(got.map((b) => b.cid.toString())).toEqual(blocks.map((b) => b.cid.toString()))
        for (const [i, b] of got.entries()) sameBytes(b.bytes, blocks[i]!.bytes)
      })

      it('a second put of the same block is a duplicate', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        await store.put(b0!)
        const before = await store.stats()
        expect(await store.put(b0!)).toEqual({ cid: b0!.cid, status: 'duplicate' })
        expect(await store.stats()).toEqual(before)
      })

      it('a raw chunk put twice is a duplicate, also within one batch', async () => {
        const { body, chunks } = encodeValue(new Uint8Array(randomBytes(1024 * 1024 + 10)))
        const rec = createSignedBlock(alice, {
          type: VALUE_RECORD_TYPE,
          chain: chainA,
          seq: 0,
          prev: null,
          ts: 1,
          body,
        })
        const res = await store.putMany([rec, chunks[0]!, chunks[0]!, chunks[1]!])
        expect(res.map((r) => r.status)).toEqual(['stored', 'stored', 'duplicate', 'stored'])
        expect((await store.put(chunks[1]!)).status).toBe('duplicate')
      })

      it('links lists the prev and body links of a stored signed block', async () => {
        const { body, chunks } = encodeValue(new Uint8Array(randomBytes(1024 * 1024 + 10)))
        const [b0] = chainOf(alice, chainA, 1)
        const b1 = createSignedBlock(alice, {
          type: VALUE_RECORD_TYPE,
          chain: chainA,
          seq: 1,
          prev: b0!.cid,
          ts: 1,
          body,
        })
        await store.putMany([b0!, b1, ...chunks])
        const links = (await store.links(b1.cid)).map(String).sort()
        expect(links).toEqual([b0!.cid, ...chunks.map((c) => c.cid)].map(String).sort())
        expect(await store.links(b0!.cid)).toEqual([])
      })
    })

    describe('validation', () => {
      it('refuses bytes that do not match the CID: CID_MISMATCH', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        const other = valueBlock(alice, chainA, 0, null, 'other')
        await expectRefused([{ cid: b0!.cid, bytes: other.bytes }], 'CID_MISMATCH')
        await expectRefused(
          [{ cid: cidFor(RAW, new Uint8Array([1])), bytes: new Uint8Array([2]) }],
          'CID_MISMATCH',
        )
      })

      it('refuses a bad signature: INVALID_SIGNATURE', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        const rec = dagCbor.decode(b0!.bytes) as Record<string, unknown>
        const sig = new Uint8Array(rec.sig as Uint8Array)
        sig[10]! ^= 0x01
        await expectRefused([reencode({ ...rec, sig })], 'INVALID_SIGNATURE')
      })

      it('refuses a block signed by another key than its author: INVALID_SIGNATURE', async () => {
        const unsigned = {
          v: 1,
          type: VALUE_RECORD_TYPE,
          chain: chainA,
          seq: 0,
          prev: null,
          author: alice.did,
          ts: 1,
        }
        const body = { inline: 'forged' }
        const sig = bob.signWithDomain(blockTag(VALUE_RECORD_TYPE), dagCbor.encode({ ...unsigned, body }))
        await expectRefused([reencode({ ...unsigned, body, sig })], 'INVALID_SIGNATURE')
      })

      it('refuses a tampered body: INVALID_SIGNATURE with a fresh CID, CID_MISMATCH with the old one', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        const rec = dagCbor.decode(b0!.bytes) as Record<string, unknown>
        const tampered = reencode({ ...rec, body: { inline: 'changed' } })
        await expectRefused([tampered], 'INVALID_SIGNATURE')
        await expectRefused([{ cid: b0!.cid, bytes: tampered.bytes }], 'CID_MISMATCH')
      })

      it('refuses an oversized block: BLOCK_TOO_LARGE', async () => {
        const bytes = new Uint8Array(MAX_BLOCK_BYTES + 1)
        await expectRefused([{ cid: cidFor(RAW, bytes), bytes }], 'BLOCK_TOO_LARGE')
      })

      it('refuses non-canonical DAG-CBOR: MALFORMED_BLOCK', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        // `"v": 1` written with a one-byte-longer integer encoding (0x18 0x01 instead of 0x01)
        const at = Buffer.from(b0!.bytes).indexOf(Buffer.from([0x61, 0x76, 0x01]))
        expect(at).toBeGreaterThan(0)
        const bytes = new Uint8Array(b0!.bytes.length + 1)
        bytes.set(b0!.bytes.subarray(0, at + 2))
        bytes.set([0x18, 0x01], at + 2)
        bytes.set(b0!.bytes.subarray(at + 3), at + 4)
        await expectRefused([{ cid: cidFor(DAG_CBOR, bytes), bytes }], 'MALFORMED_BLOCK')
        // and bytes that are not DAG-CBOR at all
        const junk = new Uint8Array([0xff, 0x00, 0x01])
        await expectRefused([{ cid: cidFor(DAG_CBOR, junk), bytes: junk }], 'MALFORMED_BLOCK')
      })

      it('refuses a chain named after another DID: MALFORMED_BLOCK', async () => {
        const block = signRaw(alice, {
          v: 1,
          type: VALUE_RECORD_TYPE,
          chain: chainId(bob.did, 'main'),
          seq: 0,
          prev: null,
          author: alice.did,
          ts: 1,
          body: { inline: 1 },
        })
        await expectRefused([block], 'MALFORMED_BLOCK')
      })

      it('refuses a block whose predecessor is unknown: CHAIN_GAP', async () => {
        const [b0, b1, b2] = chainOf(alice, chainA, 3)
        await store.put(b0!)
        await expectRefused([b2!], 'CHAIN_GAP')
        await expectRefused([b1!, b2!].reverse(), 'CHAIN_GAP')
        expect((await store.putMany([b1!, b2!])).map((r) => r.status)).toEqual(['stored', 'stored'])
      })

      it('refuses a block whose prev is not the stored predecessor: PREV_MISMATCH', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        await store.put(b0!)
        const stray = valueBlock(alice, chainId(alice.did, 'other'), 0, null)
        await expectRefused([valueBlock(alice, chainA, 1, stray.cid)], 'PREV_MISMATCH')
      })

      it('refuses a chunk no stored signed block links: UNANCHORED_CHUNK', async () => {
        const chunk = createRawBlock(new Uint8Array(randomBytes(1000)))
        await expectRefused([chunk], 'UNANCHORED_CHUNK')
      })

      it('a batch whose last block is invalid stores none of the others', async () => {
        const blocks = chainOf(alice, chainA, 4)
        const { body, chunks } = encodeValue(new Uint8Array(randomBytes(1024 * 1024 + 10)))
        const other = chainId(bob.did, 'x')
        const withChunks = createSignedBlock(bob, {
          type: VALUE_RECORD_TYPE,
          chain: other,
          seq: 0,
          prev: null,
          ts: 1,
          body,
        })
        const bad = { cid: blocks[3]!.cid, bytes: blocks[2]!.bytes }
        await expectRefused([...blocks.slice(0, 3), withChunks, ...chunks, bad], 'CID_MISMATCH')
        // a chain rule broken last (checked inside the transaction)
        await expectRefused(
          [...blocks.slice(0, 3), withChunks, ...chunks, valueBlock(alice, chainA, 9, blocks[2]!.cid)],
          'CHAIN_GAP',
        )
        for (const b of [...blocks, withChunks, ...chunks]) expect(await store.has(b.cid)).toBe(false)
        expect(await store.chainHead(chainA)).toBeUndefined()
        expect(await store.chainEntry(chainA, 0)).toBeUndefined()
      })
    })

    describe('equivocation', () => {
      it('stamps evidence with the clock it was given (StoreComponents.clock), not the machine’s', async () => {
        let now = 1_234_567
        const timed = await factory.setup({ clock: { now: () => now } })
        try {
          const chain = chainId(bob.did, 'clocked')
          const [b0, b1] = chainOf(bob, chain, 2)
          await timed.putMany([b0!, b1!])
          now = 2_000_000
          const rival = valueBlock(bob, chain, 1, b0!.cid, 'rival')
          expect((await timed.put(rival)).status).toBe('equivocation')
          const ev = (await timed.evidence()).find((e) => e.second.equals(rival.cid))
          expect(ev?.detectedAt).toBe(2_000_000)
        } finally {
          await factory.teardown(timed)
        }
      })

      it('keeps a second block at an occupied position as evidence', async () => {
        const [b0, b1] = chainOf(alice, chainA, 2)
        await store.putMany([b0!, b1!])
        const rival = valueBlock(alice, chainA, 1, b0!.cid, 'rival')
        expect(await store.put(rival)).toEqual({ cid: rival.cid, status: 'equivocation' })
        const evidence = await store.evidence()
        expect(evidence).toHaveLength(1)
        expect(evidence[0]).toMatchObject({ chain: chainA, seq: 1 })
        expect(evidence[0]!.first.equals(b1!.cid)).toBe(true)
        expect(evidence[0]!.second.equals(rival.cid)).toBe(true)
        expect(typeof evidence[0]!.detectedAt).toBe('number')
        expect((await store.chainEntry(chainA, 1))?.equals(b1!.cid)).toBe(true)
        expect((await store.chainHead(chainA))?.cid.equals(b1!.cid)).toBe(true)
        sameBytes(await store.get(rival.cid), rival.bytes)
        expect((await store.stats()).evidence).toBe(1)
        // offering the same rival again records nothing new
        expect((await store.put(rival)).status).toBe('equivocation')
        expect(await store.evidence()).toHaveLength(1)
        // the rival's successor does not extend the chain
        await expectRefused([valueBlock(alice, chainA, 2, rival.cid)], 'PREV_MISMATCH')
      })

      it('detects an equivocation inside one batch', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        const rival = valueBlock(alice, chainA, 0, null, 'rival')
        const res = await store.putMany([b0!, rival])
        expect(res.map((r) => r.status)).toEqual(['stored', 'equivocation'])
        expect((await store.chainEntry(chainA, 0))?.equals(b0!.cid)).toBe(true)
      })
    })

    describe('chunked values', () => {
      it('stores a 3.5 MiB value as a record and its chunks, and reads it back', async () => {
        const value = { name: 'big', data: new Uint8Array(randomBytes(3.5 * 1024 * 1024)) }
        const { body, chunks } = encodeValue(value)
        expect(chunks.length).toBe(4)
        const rec = createSignedBlock(alice, {
          type: VALUE_RECORD_TYPE,
          chain: chainA,
          seq: 0,
          prev: null,
          ts: 1,
          body,
        })
        const res = await store.putMany([rec, ...chunks])
        expect(res.every((r) => r.status === 'stored')).toBe(true)
        for (const c of chunks) expect(await store.has(c.cid)).toBe(true)
        const decoded = decodeSignedBlock(await store.get(rec.cid))
        const back = (await decodeValue(rec.cid, decoded.body, (cid) => store.get(cid))) as typeof value
        expect(back.name).toBe('big')
        sameBytes(back.data, value.data)
        expect((await store.stats()).bytes).toBeGreaterThan(3.5 * 1024 * 1024)
      })

      it('accepts chunks before their record in a batch, and later chunks of a stored record', async () => {
        const { body, chunks } = encodeValue(new Uint8Array(randomBytes(2 * 1024 * 1024 + 5)))
        const rec = createSignedBlock(alice, {
          type: VALUE_RECORD_TYPE,
          chain: chainA,
          seq: 0,
          prev: null,
          ts: 1,
          body,
        })
        expect((await store.putMany([chunks[0]!, rec])).map((r) => r.status)).toEqual(['stored', 'stored'])
        expect((await store.putMany(chunks.slice(1))).every((r) => r.status === 'stored')).toBe(true)
      })
    })

    describe('chains', () => {
      it('tracks heads and entries across batches', async () => {
        const blocks = chainOf(alice, chainA, 6)
        await store.putMany(blocks.slice(0, 2))
        await store.putMany(blocks.slice(2, 5))
        await store.put(blocks[5]!)
        const chainB = chainId(bob.did, 'main')
        const bBlocks = chainOf(bob, chainB, 2)
        await store.putMany(bBlocks)
        const head = await store.chainHead(chainA)
        expect(head).toMatchObject({ chain: chainA, author: alice.did, seq: 5 })
        expect(head!.cid.equals(blocks[5]!.cid)).toBe(true)
        for (const [i, b] of blocks.entries())
          expect((await store.chainEntry(chainA, i))?.equals(b.cid)).toBe(true)
        expect(await store.chainEntry(chainA, 6)).toBeUndefined()
        expect(await store.chainHead(chainId(alice.did, 'none'))).toBeUndefined()
        const heads = await store.chainHeads()
        expect(heads.map((h) => h.chain).sort()).toEqual([chainA, chainB].sort())
        expect(heads.find((h) => h.chain === chainB)).toMatchObject({ seq: 1, author: bob.did })
        // a duplicate of an old block never moves the head back
        await store.put(blocks[1]!)
        expect((await store.chainHead(chainA))?.seq).toBe(5)
      })

      it('chainRange returns positions in order, bounded, and stops at the first gap', async () => {
        const blocks = chainOf(alice, chainA, 6)
        await store.putMany(blocks)
        const cids = (bs: { cid: { toString(): string } }[]) => bs.map((b) => b.cid.toString())
        const mid = await store.chainRange(chainA, 1, 3)
        expect(cids(mid)).toEqual(cids(blocks.slice(1, 4)))
        for (const [i, b] of mid.entries())
          expect(Buffer.from(b.bytes).equals(Buffer.from(blocks[i + 1]!.bytes))).toBe(true)
        expect(cids(await store.chainRange(chainA, 4, 100))).toEqual(cids(blocks.slice(4)))
        expect(await store.chainRange(chainA, 6, 10)).toEqual([])
        expect(await store.chainRange(chainId(alice.did, 'none'), 0, 10)).toEqual([])
        // A block whose bytes were deleted ends the range there, even though later positions are known.
        await store.delete(blocks[2]!.cid)
        expect(cids(await store.chainRange(chainA, 0, 6))).toEqual(cids(blocks.slice(0, 2)))
      })

      it('all() yields every block, predecessors before successors', async () => {
        const a = chainOf(alice, chainA, 300)
        const chainB = chainId(bob.did, 'main')
        const b = chainOf(bob, chainB, 20)
        await store.putMany(a.slice(0, 150))
        await store.putMany([...b.slice(0, 10), ...a.slice(150)])
        await store.putMany(b.slice(10))
        const seen = new Map<string, number>()
        let i = 0
        for await (const blk of store.all()) seen.set(blk.cid.toString(), i++)
        expect(seen.size).toBe(320)
        for (const chain of [a, b])
          for (let k = 1; k < chain.length; k++)
            expect(seen.get(chain[k - 1]!.cid.toString())!).toBeLessThan(seen.get(chain[k]!.cid.toString())!)
      })
    })

    describe('pins and gc', () => {
      it('pins, lists and unpins; pinning a missing block is NOT_FOUND', async () => {
        const [b0, b1] = chainOf(alice, chainA, 2)
        await store.putMany([b0!, b1!])
        await store.pin(b1!.cid)
        await store.pin(b1!.cid)
        await store.pin(b0!.cid)
        expect((await store.pins()).map(String).sort()).toEqual([b0!.cid, b1!.cid].map(String).sort())
        expect((await store.stats()).pins).toBe(2)
        await store.unpin(b0!.cid)
        await store.unpin(b0!.cid)
        expect((await store.pins()).map(String)).toEqual([b1!.cid.toString()])
        const missing = valueBlock(alice, chainA, 2, b1!.cid)
        await expect(store.pin(missing.cid)).rejects.toMatchObject({ code: 'NOT_FOUND' })
        await store.delete(b1!.cid)
        expect(await store.pins()).toEqual([])
      })

      it('a chain stored again after its blocks were deleted and collected keeps all it links', async () => {
        const { body, chunks } = encodeValue(new Uint8Array(randomBytes(1024 * 1024 + 100)))
        const [a0] = chainOf(alice, chainA, 1)
        const a1 = createSignedBlock(alice, {
          type: VALUE_RECORD_TYPE,
          chain: chainA,
          seq: 1,
          prev: a0!.cid,
          ts: 1,
          body,
        })
        const [a2] = chainOf(alice, chainA, 1, 2, a1.cid)
        const all = [a0!, a1, a2!, ...chunks]
        await store.putMany(all)
        for (const b of [a0!, a1, a2!]) await store.delete(b.cid)
        expect((await store.gc()).removed).toBe(chunks.length) // the record that linked them is gone
        const again = await store.putMany(all)
        expect(again.slice(0, 3).map((r) => r.status)).toEqual(['duplicate', 'duplicate', 'duplicate'])
        expect((await store.gc()).removed).toBe(0)
        for (const b of all) expect(await store.has(b.cid)).toBe(true)
        expect((await store.links(a2!.cid)).map(String)).toEqual([a1.cid.toString()])
        const value = await decodeValue(a1.cid, decodeSignedBlock(await store.get(a1.cid)).body, (c) =>
          store.get(c),
        )
        expect(value).toBeInstanceOf(Uint8Array)
      })

      it('keeps every chain whole, replicated ones too; only what no head, pin, evidence or root reaches goes', async () => {
        // A: the writer's own chain, its head linking a chunked value; nothing pinned
        const big = (): ReturnType<typeof encodeValue> =>
          encodeValue(new Uint8Array(randomBytes(1024 * 1024 + 100)))
        const va = big()
        const [a0, a1] = chainOf(alice, chainA, 2)
        const a2 = createSignedBlock(alice, {
          type: VALUE_RECORD_TYPE,
          chain: chainA,
          seq: 2,
          prev: a1!.cid,
          ts: 1,
          body: va.body,
        })
        await store.putMany([a0!, a1!, a2, ...va.chunks])
        // B: another author's chain, as replication brings it; nothing pins it
        const chainB = chainId(bob.did, 'b')
        const b = chainOf(bob, chainB, 3)
        await store.putMany(b)
        // E: a chain whose head was deleted: its predecessor and the head's chunks are reached by nothing
        const chainE = chainId(alice.did, 'e')
        const ve = big()
        const [e0] = chainOf(alice, chainE, 1)
        const e1 = createSignedBlock(alice, {
          type: VALUE_RECORD_TYPE,
          chain: chainE,
          seq: 1,
          prev: e0!.cid,
          ts: 1,
          body: ve.body,
        })
        await store.putMany([e0!, e1, ...ve.chunks])
        await store.delete(e1.cid)
        // P: the same, but its first block pinned
        const chainP = chainId(bob.did, 'p')
        const [p0, p1] = chainOf(bob, chainP, 2)
        await store.putMany([p0!, p1!])
        await store.pin(p0!.cid)
        await store.delete(p1!.cid)
        // D: an equivocation; both blocks are evidence
        const chainD = chainId(alice.did, 'd')
        const [d0] = chainOf(alice, chainD, 1)
        const rival = valueBlock(alice, chainD, 0, null, 'rival')
        await store.putMany([d0!, rival])

        // e0 is kept by the roots option only; E's chunks go
        expect(await store.gc({ roots: [e0!.cid] })).toEqual({ removed: ve.chunks.length })
        for (const x of ve.chunks) expect(await store.has(x.cid)).toBe(false)
        const kept = [a0!, a1!, a2, ...va.chunks, ...b, e0!, p0!, d0!, rival]
        for (const x of kept) expect(await store.has(x.cid)).toBe(true)
        await expectIntactChain(chainA)
        await expectIntactChain(chainB)
        expect(await store.links(e1.cid)).toEqual([])
        // chain positions stay known after gc
        expect((await store.chainHead(chainE))?.seq).toBe(1)
        expect((await store.stats()).blocks).toBe(kept.length)

        // without the root, e0 goes; after unpinning, p0 too; the chains and the evidence stay
        expect(await store.gc()).toEqual({ removed: 1 })
        await store.unpin(p0!.cid)
        expect(await store.gc()).toEqual({ removed: 1 })
        expect((await store.stats()).blocks).toBe(kept.length - 2)
        expect(await store.gc()).toEqual({ removed: 0 })
        await expectIntactChain(chainA)
        await expectIntactChain(chainB)
        for (const x of [d0!, rival]) expect(await store.has(x.cid)).toBe(true)
      })
    })

    it('stats counts blocks, bytes, chains, pins and evidence', async () => {
      expect(await store.stats()).toEqual({ blocks: 0, bytes: 0, chains: 0, pins: 0, evidence: 0 })
      const blocks = chainOf(alice, chainA, 3)
      const chainB = chainId(bob.did, 'main')
      const [b0] = chainOf(bob, chainB, 1)
      const rival = valueBlock(bob, chainB, 0, null, 'rival')
      await store.putMany([...blocks, b0!, rival])
      await store.pin(blocks[2]!.cid)
      const bytes = [...blocks, b0!, rival].reduce((n, b) => n + b.bytes.length, 0)
      expect(await store.stats()).toEqual({ blocks: 5, bytes, chains: 2, pins: 1, evidence: 1 })
    })

    describe('concurrency', () => {
      it('20 concurrent putMany of different chains all succeed', async () => {
        const writers = Array.from({ length: 20 }, () => Signer.generate())
        const batches = writers.map((w) => chainOf(w, chainId(w.did, 'main'), 5))
        const results = await Promise.all(batches.map((b) => store.putMany(b)))
        for (const r of results) expect(r.every((x) => x.status === 'stored')).toBe(true)
        const heads = await store.chainHeads()
        expect(heads).toHaveLength(20)
        expect(heads.every((h) => h.seq === 4)).toBe(true)
        expect((await store.stats()).blocks).toBe(100)
      })

      it('competing writes to one chain position end with one entry and the rest evidence or refused', async () => {
        const [b0] = chainOf(alice, chainA, 1)
        await store.put(b0!)
        // single rivals: exactly one is stored, the others are evidence
        const rivals = Array.from({ length: 10 }, (_, i) =>
          valueBlock(alice, chainA, 1, b0!.cid, `rival ${i}`),
        )
        const res = await Promise.all(rivals.map((r) => store.put(r)))
        expect(res.filter((r) => r.status === 'stored')).toHaveLength(1)
        expect(res.filter((r) => r.status === 'equivocation')).toHaveLength(9)
        const winner = res.find((r) => r.status === 'stored')!.cid
        expect((await store.chainEntry(chainA, 1))?.equals(winner)).toBe(true)
        expect((await store.chainHead(chainA))?.cid.equals(winner)).toBe(true)
        expect(await store.evidence()).toHaveLength(9)

        // forks of 1 to 3 blocks from seq 2: each batch is stored, kept as evidence, or refused whole
        const forks = Array.from({ length: 9 }, (_, i) =>
          chainOf(alice, chainA, 1 + (i % 3), 2, winner, `fork ${i}`),
        )
        const settled = await Promise.allSettled(forks.map((f) => store.putMany(f)))
        let kept = 0
        let storedAt2 = 0
        for (const s of settled) {
          if (s.status === 'rejected') {
            expect((s.reason as { code?: string }).code).toBe('PREV_MISMATCH')
            continue
          }
          kept += s.value.length
          if (s.value[0]!.status === 'stored') storedAt2++
          for (const r of s.value) expect(['stored', 'equivocation']).toContain(r.status)
        }
        expect(storedAt2).toBe(1)
        await expectIntactChain(chainA)
        const stats = await store.stats()
        expect(stats.blocks).toBe(1 + 10 + kept)
        expect(stats.evidence).toBe((await store.evidence()).length)
      })

      it('concurrent batches sharing raw chunks all succeed', async () => {
        const { body, chunks } = encodeValue(new Uint8Array(randomBytes(1024 * 1024 + 5)))
        const writers = Array.from({ length: 4 }, () => Signer.generate())
        const batches = writers.map((w, i) => {
          const rec = createSignedBlock(w, {
            type: VALUE_RECORD_TYPE,
            chain: chainId(w.did, 'v'),
            seq: 0,
            prev: null,
            ts: 1,
            body,
          })
          const order = i % 2 === 0 ? chunks : [...chunks].reverse()
          return [rec, ...order]
        })
        const results = await Promise.all(batches.map((b) => store.putMany(b)))
        for (const [k, c] of chunks.entries()) {
          const statuses = results.map((r, i) => r[1 + (i % 2 === 0 ? k : chunks.length - 1 - k)]!.status)
          expect(statuses.filter((s) => s === 'stored')).toHaveLength(1)
          expect(await store.has(c.cid)).toBe(true)
        }
        expect((await store.stats()).blocks).toBe(writers.length + chunks.length)
      })
    })

    describe('abort', () => {
      it('an aborted signal stores nothing and throws ABORTED', async () => {
        const ac = new AbortController()
        ac.abort()
        const blocks = chainOf(alice, chainA, 3)
        await expect(store.putMany(blocks, { signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' })
        await expect(store.put(blocks[0]!, { signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' })
        expect((await store.stats()).blocks).toBe(0)
        await expect(store.get(blocks[0]!.cid, { signal: ac.signal })).rejects.toMatchObject({
          code: 'ABORTED',
        })
        await expect(store.has(blocks[0]!.cid, { signal: ac.signal })).rejects.toMatchObject({
          code: 'ABORTED',
        })
        await expect(store.gc({ signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' })
        await expect(store.stats({ signal: ac.signal })).rejects.toMatchObject({ code: 'ABORTED' })
        const iter = store.all({ signal: ac.signal })
        await expect(iter.next()).rejects.toMatchObject({ code: 'ABORTED' })
      })
    })

    describe('sql access (the door derived state uses)', () => {
      const TABLE =
        'CREATE TABLE IF NOT EXISTS sqltest_t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, n BIGINT)'
      const count = async (): Promise<number> =>
        Number((await store.sql().query('SELECT count(*) AS c FROM sqltest_t'))[0]!.c)

      it('placeholders $n bind by number, also repeated and out of order; literals keep their text', async () => {
        const sql = store.sql()
        expect(sql.dialect).toBe(store.backend)
        await sql.exec(TABLE)
        expect(await sql.query('INSERT INTO sqltest_t (id, name, n) VALUES ($2, $1, $2)', ['a', 7])).toEqual(
          [],
        )
        await sql.query('INSERT INTO sqltest_t (id, name, n) VALUES ($1, $2, $3)', [8, '$1', null])
        const rows = await sql.query(
          "SELECT id, name, n, '$1' AS lit FROM sqltest_t WHERE id >= $1 AND name <> $2 ORDER BY id",
          [7, 'zzz'],
        )
        expect(rows).toEqual([
          { id: 7, name: 'a', n: 7, lit: '$1' },
          { id: 8, name: '$1', n: null, lit: '$1' },
        ])
        expect(await sql.query('SELECT name FROM sqltest_t WHERE n = $1', [7])).toEqual([{ name: 'a' }])
      })

      it('a statement run again after its table changed answers for the table as it is now', async () => {
        // PostgreSQL statements are prepared once per connection: one whose result columns changed must not
        // be reused as prepared ("cached plan must not change result type"). Each pooled connection runs both.
        const sql = store.sql()
        await sql.exec('CREATE TABLE sqltest_cols (id BIGINT PRIMARY KEY, a TEXT)')
        await sql.query('INSERT INTO sqltest_cols (id, a) VALUES ($1, $2)', [1, 'x'])
        const twice = async (): Promise<SqlRow[][]> =>
          Promise.all(
            Array.from({ length: 12 }, () => sql.query('SELECT * FROM sqltest_cols WHERE id = $1', [1])),
          )
        for (const rows of await twice()) expect(rows).toEqual([{ id: 1, a: 'x' }])
        await sql.exec('ALTER TABLE sqltest_cols ADD COLUMN b BIGINT')
        for (const rows of await twice()) expect(rows).toEqual([{ id: 1, a: 'x', b: null }])
        await sql.exec('DROP TABLE sqltest_cols')
      })

      it('integers round trip as numbers: BIGINT columns, count(*) and sum()', async () => {
        const sql = store.sql()
        await sql.exec(TABLE)
        const values = [0, -1, 1, 2 ** 31, -(2 ** 40), Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]
        for (const [i, v] of values.entries())
          await sql.query('INSERT INTO sqltest_t (id, name, n) VALUES ($1, $2, $3)', [i, `v${i}`, v])
        const rows = await sql.query('SELECT id, n FROM sqltest_t ORDER BY id')
        expect(rows.map((r) => r.n)).toEqual(values)
        for (const r of rows) expect(typeof r.id).toBe('number')
        const [agg] = await sql.query('SELECT count(*) AS c, sum(n) AS s FROM sqltest_t WHERE id < $1', [
          values.length - 2,
        ])
        expect(agg).toEqual({ c: values.length - 2, s: 0 - 1 + 1 + 2 ** 31 - 2 ** 40 })
      })

      it('a transaction commits when fn resolves, with its result', async () => {
        const sql = store.sql()
        await sql.exec(TABLE)
        const result = await sql.transaction(async (tx) => {
          await tx.query('INSERT INTO sqltest_t (id, name) VALUES ($1, $2)', [1, 'one'])
          await tx.query('INSERT INTO sqltest_t (id, name) VALUES ($1, $2)', [2, 'two'])
          return (await tx.query('SELECT count(*) AS c FROM sqltest_t'))[0]!.c
        })
        expect(result).toBe(2)
        expect(await count()).toBe(2)
      })

      it('a transaction rolls back when fn throws, rethrowing that error; a read outside waits for it', async () => {
        const sql = store.sql()
        await sql.exec(TABLE)
        await sql.query('INSERT INTO sqltest_t (id, name) VALUES ($1, $2)', [1, 'kept'])
        const boom = new Error('boom')
        let outside: Promise<number> | undefined
        const err = await sql
          .transaction(async (tx) => {
            await tx.query('INSERT INTO sqltest_t (id, name) VALUES ($1, $2)', [2, 'gone'])
            await tx.query('UPDATE sqltest_t SET name = $1 WHERE id = $2', ['changed', 1])
            // Outside the transaction: must not see its uncommitted rows (on SQLite it waits for the end).
            outside = count()
            await tx.query('SELECT 1')
            throw boom
          })
          .catch((e: unknown) => e)
        expect(err).toBe(boom)
        expect(await outside).toBe(1)
        expect(await sql.query('SELECT id, name FROM sqltest_t ORDER BY id')).toEqual([
          { id: 1, name: 'kept' },
        ])
      })

      it('bad SQL fails SQL_FAILED and rolls the transaction back; a closed store is STORE_CLOSED', async () => {
        const sql = store.sql()
        await sql.exec(TABLE)
        await expect(sql.query('SELEKT 1')).rejects.toMatchObject({ code: 'SQL_FAILED' })
        await sql.query('INSERT INTO sqltest_t (id, name) VALUES ($1, $2)', [1, 'one'])
        await expect(
          sql.transaction(async (tx) => {
            await tx.query('INSERT INTO sqltest_t (id, name) VALUES ($1, $2)', [2, 'two'])
            await tx.query('INSERT INTO sqltest_t (id, name) VALUES ($1, $2)', [1, 'duplicate key'])
          }),
        ).rejects.toMatchObject({ code: 'SQL_FAILED' })
        expect(await count()).toBe(1)
        await store.close()
        await expect(store.sql().query('SELECT 1')).rejects.toMatchObject({ code: 'STORE_CLOSED' })
        await expect(store.sql().transaction(async () => 1)).rejects.toMatchObject({ code: 'STORE_CLOSED' })
      })

      it('a put started inside a transaction is not caught in it: rolled back rows go, the block stays', async () => {
        const sql = store.sql()
        await sql.exec(TABLE)
        const [b0] = chainOf(alice, chainA, 1)
        const order: string[] = []
        let put: Promise<unknown> | undefined
        await sql
          .transaction(async (tx) => {
            await tx.query('INSERT INTO sqltest_t (id, name) VALUES ($1, $2)', [1, 'gone'])
            put = store.put(b0!).then((r) => {
              order.push('put')
              return r
            })
            // Give the put every chance to reach its commit while the transaction is open (it must wait).
            await Promise.race([put, new Promise((resolve) => setTimeout(resolve, 100))])
            order.push('transaction over')
            throw new Error('roll back')
          })
          .catch(() => {})
        expect(await put).toMatchObject({ status: 'stored' })
        expect(await store.has(b0!.cid)).toBe(true)
        expect(await count()).toBe(0)
        if (store.backend === 'sqlite') expect(order).toEqual(['transaction over', 'put'])
      })
    })

    describe('lifecycle', () => {
      it('open twice and close twice are fine; use after close is STORE_CLOSED', async () => {
        await store.open()
        const [b0] = chainOf(alice, chainA, 1)
        await store.put(b0!)
        await store.ping()
        await store.close()
        await store.close()
        await expect(store.put(b0!)).rejects.toMatchObject({ code: 'STORE_CLOSED' })
        await expect(store.get(b0!.cid)).rejects.toMatchObject({ code: 'STORE_CLOSED' })
        await expect(store.has(b0!.cid)).rejects.toMatchObject({ code: 'STORE_CLOSED' })
        await expect(store.stats()).rejects.toMatchObject({ code: 'STORE_CLOSED' })
        await expect(store.ping()).rejects.toMatchObject({ code: 'STORE_CLOSED' })
        await expect(store.chainHeads()).rejects.toMatchObject({ code: 'STORE_CLOSED' })
      })

      it('keeps its data across close and open', async () => {
        const blocks = chainOf(alice, chainA, 3)
        await store.putMany(blocks)
        await store.close()
        await store.open()
        expect((await store.chainHead(chainA))?.seq).toBe(2)
        sameBytes(await store.get(blocks[1]!.cid), blocks[1]!.bytes)
      })
    })
  })
}
