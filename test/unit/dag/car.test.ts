import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { CarReader, CarWriter } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type Block,
  type BlockStore,
  chainId,
  cidFor,
  createRawBlock,
  createSignedBlock,
  DAG_CBOR,
  decodeSignedBlock,
  decodeValue,
  encodeValue,
  exportCar,
  importCar,
  RAW,
  SqliteBlockStore,
  VALUE_RECORD_TYPE,
} from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'
import { createMetrics } from '../../../src/observability/index.js'

let dir: string
const stores: SqliteBlockStore[] = []

async function openStore(name: string): Promise<SqliteBlockStore> {
  const store = new SqliteBlockStore({ path: join(dir, name, 'blocks.db') })
  await store.open()
  stores.push(store)
  return store
}

/** Append `count` small records to chain `name`; returns the blocks written. */
async function appendRecords(
  store: BlockStore,
  signer: Signer,
  name: string,
  count: number,
): Promise<Block[]> {
  const chain = chainId(signer.did, name)
  const head = await store.chainHead(chain)
  let prev = head?.cid ?? null
  let seq = head ? head.seq + 1 : 0
  const out: Block[] = []
  for (let i = 0; i < count; i++, seq++) {
    const b = createSignedBlock(signer, {
      type: 'test.note/v1',
      chain,
      seq,
      prev,
      ts: 1_700_000_000_000 + seq,
      body: { n: seq },
    })
    await store.put(b, { source: 'test' })
    out.push(b)
    prev = b.cid
  }
  return out
}

/** Append a chunked value (record plus its raw chunks, in one putMany). */
async function appendValue(
  store: BlockStore,
  signer: Signer,
  name: string,
  value: unknown,
): Promise<Block[]> {
  const chain = chainId(signer.did, name)
  const head = await store.chainHead(chain)
  const { body, chunks } = encodeValue(value)
  const record = createSignedBlock(signer, {
    type: VALUE_RECORD_TYPE,
    chain,
    seq: head ? head.seq + 1 : 0,
    prev: head?.cid ?? null,
    ts: 1_700_000_000_000,
    body,
  })
  await store.putMany([record, ...chunks], { source: 'test' })
  return [record, ...chunks]
}

/** Collects what is written; a tiny highWaterMark makes exportCar wait for 'drain'. */
class Sink extends Writable {
  readonly parts: Buffer[] = []
  constructor() {
    super({ highWaterMark: 64 })
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.parts.push(Buffer.from(chunk))
    setImmediate(cb)
  }
  bytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.parts))
  }
}

async function carOf(store: BlockStore, root?: CID): Promise<Uint8Array> {
  const sink = new Sink()
  await exportCar(store, sink, { root })
  return sink.bytes()
}

/** CID → sha256 of the stored bytes (deep-comparing megabytes of Uint8Array in expect is slow). */
async function blocksOf(store: BlockStore): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for await (const b of store.all())
    out.set(b.cid.toString(), createHash('sha256').update(b.bytes).digest('hex'))
  return out
}

async function carBlocks(bytes: Uint8Array): Promise<Block[]> {
  const reader = await CarReader.fromBytes(bytes)
  const out: Block[] = []
  for await (const b of reader.blocks()) out.push(b)
  return out
}

async function handBuiltCar(roots: CID[], blocks: Block[]): Promise<Uint8Array> {
  const { writer, out } = CarWriter.create(roots)
  const collected = (async () => {
    const parts: Uint8Array[] = []
    for await (const p of out) parts.push(p)
    return new Uint8Array(Buffer.concat(parts))
  })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  return collected
}

async function expectInvalidCar(
  p: Promise<unknown>,
): Promise<{ code: string; message: string; details?: Record<string, unknown> }> {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as { code: string; message: string; details?: Record<string, unknown> } | undefined
  expect(err, 'expected importCar to fail').toBeDefined()
  expect(err!.code).toBe('INVALID_CAR')
  return err!
}

describe('CAR export/import', () => {
  let source: SqliteBlockStore
  let alice: Signer
  let bob: Signer
  let aliceMain: Block[]
  let bigValue: Uint8Array
  let bigBlocks: Block[]

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'icn-car-'))
    source = await openStore('source')
    alice = Signer.generate()
    bob = Signer.generate()
    aliceMain = await appendRecords(source, alice, 'main', 5)
    await appendRecords(source, bob, 'main', 3)
    await appendRecords(source, alice, 'side', 2)
    bigValue = new Uint8Array(2 * 1024 * 1024 + 12345).map((_, i) => (i * 7) & 0xff)
    bigBlocks = await appendValue(source, bob, 'files', { name: 'big', data: bigValue })
    await appendRecords(source, alice, 'main', 2)
  })

  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('round-trips the whole store: same blocks, same chain heads', async () => {
    const sink = new Sink()
    const progress: number[] = []
    const metrics = createMetrics({ collectProcess: false })
    const res = await exportCar(source, sink, { onProgress: (n) => progress.push(n), metrics })
    const car = sink.bytes()
    const before = await blocksOf(source)
    expect(res.blocks).toBe(before.size)
    expect(res.bytes).toBe(car.length)
    expect(progress.at(-1)).toBe(before.size)
    const heads = await source.chainHeads()
    expect(res.roots.map(String).sort()).toEqual(heads.map((h) => h.cid.toString()).sort())

    const target = await openStore('target')
    const imported = await importCar(target, car, { metrics })
    expect(imported).toMatchObject({
      blocks: before.size,
      stored: before.size,
      duplicates: 0,
      equivocations: 0,
    })
    expect(imported.roots.map(String)).toEqual(res.roots.map(String))
    expect(await blocksOf(target)).toEqual(before)
    expect(await target.chainHeads()).toEqual(heads)
    const counts = await metrics.registry.getSingleMetricAsString('icn_dag_car_blocks_total')
    expect(counts).toContain(`direction="export"} ${before.size}`)
    expect(counts).toContain(`direction="import"} ${before.size}`)
  })

  it('exports an empty store as a CAR with no roots and no blocks', async () => {
    const empty = await openStore('empty')
    const car = await carOf(empty)
    const reader = await CarReader.fromBytes(car)
    expect(await reader.getRoots()).toEqual([])
    expect(await carBlocks(car)).toEqual([])
    const target = await openStore('target')
    expect(await importCar(target, car)).toMatchObject({ blocks: 0, stored: 0, roots: [] })
  })

  it('with a root, exports only what it reaches, lower seq first', async () => {
    const root = aliceMain[2]!
    const car = await carOf(source, root.cid)
    const reader = await CarReader.fromBytes(car)
    expect((await reader.getRoots()).map(String)).toEqual([root.cid.toString()])
    const cids = (await carBlocks(car)).map((b) => b.cid.toString())
    expect(cids).toEqual(aliceMain.slice(0, 3).map((b) => b.cid.toString()))

    const target = await openStore('target')
    const res = await importCar(target, car)
    expect(res.stored).toBe(3)
    expect((await target.chainHead(chainId(alice.did, 'main')))?.seq).toBe(2)
    expect(await target.has(aliceMain[3]!.cid)).toBe(false)
  })

  it('with a root, writes a record before its chunks and a large value survives the round trip', async () => {
    const [record, ...chunks] = bigBlocks
    expect(chunks.length).toBe(3)
    const car = await carOf(source, record!.cid)
    const order = (await carBlocks(car)).map((b) => b.cid.toString())
    expect(order[0]).toBe(record!.cid.toString())
    expect(order.slice(1).sort()).toEqual(chunks.map((b) => b.cid.toString()).sort())

    const target = await openStore('target')
    const res = await importCar(target, car)
    expect(res).toMatchObject({ blocks: 4, stored: 4, duplicates: 0 })
    const decoded = decodeSignedBlock(await target.get(record!.cid))
    const value = (await decodeValue(record!.cid, decoded.body, (c) => target.get(c))) as { data: Uint8Array }
    expect(Buffer.from(value.data).equals(Buffer.from(bigValue))).toBe(true)
  })

  it('a missing root is NOT_FOUND', async () => {
    const absent = cidFor(DAG_CBOR, new Uint8Array([1, 2, 3]))
    await expect(exportCar(source, new Sink(), { root: absent })).rejects.toMatchObject({ code: 'NOT_FOUND' })
  })

  it('imports from a file stream written by exportCar', async () => {
    const file = join(dir, 'backup.car')
    const out = createWriteStream(file)
    const res = await exportCar(source, out)
    out.end()
    await finished(out)
    const target = await openStore('target')
    const imported = await importCar(target, createReadStream(file, { highWaterMark: 4096 }))
    expect(imported.stored).toBe(res.blocks)
    expect(await blocksOf(target)).toEqual(await blocksOf(source))
  })

  it('importing the same CAR twice: the second time everything is a duplicate', async () => {
    const car = await carOf(source)
    const target = await openStore('target')
    const first = await importCar(target, car)
    const second = await importCar(target, car)
    expect(second).toMatchObject({
      blocks: first.blocks,
      stored: 0,
      duplicates: first.blocks,
      equivocations: 0,
    })
  })

  it('counts a second block for an occupied chain position as an equivocation', async () => {
    const target = await openStore('target')
    await importCar(target, await carOf(source))
    const fork = createSignedBlock(alice, {
      type: 'test.note/v1',
      chain: chainId(alice.did, 'main'),
      seq: 1,
      prev: aliceMain[0]!.cid,
      ts: 1,
      body: { fork: true },
    })
    const res = await importCar(target, await handBuiltCar([fork.cid], [aliceMain[0]!, fork]))
    expect(res).toMatchObject({ blocks: 2, stored: 0, duplicates: 1, equivocations: 1 })
    expect((await target.evidence()).map((e) => e.second.toString())).toEqual([fork.cid.toString()])
  })

  it('the file is a plain CARv1 any reader understands', async () => {
    const car = await carOf(source)
    const reader = await CarReader.fromBytes(car)
    expect(reader.version).toBe(1)
    const roots = await reader.getRoots()
    expect(roots.length).toBe(4) // alice/main, alice/side, bob/main, bob/files
    for (const r of roots) expect(await reader.has(r)).toBe(true)
    expect((await carBlocks(car)).length).toBe((await source.stats()).blocks)
  })

  describe('refuses bad CARs and stores nothing', () => {
    let target: SqliteBlockStore
    beforeEach(async () => {
      target = await openStore('target')
      await appendRecords(target, Signer.generate(), 'existing', 2)
    })

    async function refused(input: Uint8Array | AsyncIterable<Uint8Array>, opts = {}) {
      const before = await target.stats()
      const err = await expectInvalidCar(importCar(target, input, opts))
      expect(await target.stats()).toEqual(before)
      return err
    }

    it('bytes flipped in the middle of a block', async () => {
      const car = await carOf(source)
      // The last chunk of the big value sits near the end; flip bytes inside it.
      const corrupt = car.slice()
      const mid = car.length - 5000
      for (let i = 0; i < 8; i++) corrupt[mid + i]! ^= 0xff
      const err = await refused(corrupt)
      expect(err.details?.code).toBe('CID_MISMATCH')
      expect(err.message).toMatch(/block \d+ \(b/)
    })

    it('bytes flipped inside a signed block', async () => {
      const blocks = await carBlocks(await carOf(source))
      const target0 = blocks[1]!
      const tampered = target0.bytes.slice()
      tampered[Math.floor(tampered.length / 2)]! ^= 0x01
      const car = await handBuiltCar(
        [],
        [blocks[0]!, { cid: target0.cid, bytes: tampered }, ...blocks.slice(2)],
      )
      const err = await refused(car)
      expect(err.details?.code).toBe('CID_MISMATCH')
      expect(err.details?.cid).toBe(target0.cid.toString())
      expect(err.details?.index).toBe(1)
    })

    it('truncated (last 100 bytes cut)', async () => {
      const car = await carOf(source)
      const err = await refused(car.subarray(0, car.length - 100))
      expect(err.message).toMatch(/truncated|end of data/i)
    })

    it('garbage bytes', async () => {
      const garbage = new Uint8Array(4096).map((_, i) => (i * 131 + 17) & 0xff)
      await refused(garbage)
      await refused(new Uint8Array(0))
      await refused(new TextEncoder().encode('this is not a CAR file at all'))
    })

    it('a header followed by a section shorter than its CID', async () => {
      const header = (await handBuiltCar([], [])).slice()
      // Section length 5, then a CIDv1 dag-cbor sha2-256 (36 bytes): the length cannot hold it.
      const cid = aliceMain[0]!.cid.bytes
      await refused(new Uint8Array([...header, 5, ...cid, 1, 2, 3]))
    })

    it('a block whose signature does not verify (CID matches the tampered bytes)', async () => {
      const original = decodeSignedBlock(aliceMain[0]!.bytes)
      const forged = dagCbor.encode({ ...original, body: { n: 999 } })
      const forgedBlock = { cid: cidFor(DAG_CBOR, forged), bytes: forged }
      const car = await handBuiltCar([forgedBlock.cid], [forgedBlock])
      const err = await refused(car)
      expect(err.details?.code).toBe('INVALID_SIGNATURE')
      expect(err.details?.cid).toBe(forgedBlock.cid.toString())
      expect(err.message).toContain(forgedBlock.cid.toString())
    })

    it('an invalid block among many valid ones: none of them is stored', async () => {
      const valid = await carBlocks(await carOf(source))
      const original = decodeSignedBlock(aliceMain[4]!.bytes)
      const forged = dagCbor.encode({ ...original, ts: original.ts + 1 })
      const car = await handBuiltCar([], [...valid, { cid: cidFor(DAG_CBOR, forged), bytes: forged }])
      const err = await refused(car)
      expect(err.details?.code).toBe('INVALID_SIGNATURE')
      expect(err.details?.index).toBe(valid.length)
    })

    it('a chunk no signed block links', async () => {
      const orphan = createRawBlock(new TextEncoder().encode('nobody links me'))
      const err = await refused(await handBuiltCar([orphan.cid], [orphan]))
      expect(err.details?.code).toBe('UNANCHORED_CHUNK')
      expect(err.details?.cid).toBe(orphan.cid.toString())
    })

    it('a chain with a gap', async () => {
      const car = await handBuiltCar([], [aliceMain[0]!, aliceMain[2]!])
      const err = await refused(car)
      expect(err.details?.code).toBe('CHAIN_GAP')
      expect(err.details?.cid).toBe(aliceMain[2]!.cid.toString())
    })

    it('a CID with a codec, version or hash the store does not accept', async () => {
      const bytes = new TextEncoder().encode('{"a":1}')
      const digest = Digest.create(0x12, createHash('sha256').update(bytes).digest())
      const dagJson = CID.createV1(0x0129, digest)
      let err = await refused(await handBuiltCar([], [{ cid: dagJson, bytes }]))
      expect(err.message).toMatch(/block 0 .*codec/)
      const v0 = CID.createV0(digest)
      err = await refused(await handBuiltCar([], [{ cid: v0, bytes }]))
      expect(err.message).toMatch(/block 0 .*CIDv0/)
      const sha512 = CID.createV1(RAW, Digest.create(0x13, new Uint8Array(64)))
      err = await refused(await handBuiltCar([], [{ cid: sha512, bytes }]))
      expect(err.message).toMatch(/block 0 .*hash/)
    })

    it('larger than maxBytes, from bytes or from a stream', async () => {
      const car = await carOf(source)
      let err = await refused(car, { maxBytes: 1000 })
      expect(err.message).toMatch(/too large/)
      const file = join(dir, 'big.car')
      await writeFile(file, car)
      err = await refused(createReadStream(file, { highWaterMark: 512 }), { maxBytes: 1000 })
      expect(err.message).toMatch(/too large/)
    })
  })

  it('honours an aborted signal', async () => {
    const car = await carOf(source)
    const target = await openStore('target')
    await expect(importCar(target, car, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'ABORTED',
    })
    await expect(exportCar(source, new Sink(), { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'ABORTED',
    })
    expect((await target.stats()).blocks).toBe(0)
  })

  it('stops and rejects when the output stream fails', async () => {
    const failing = new Writable({
      highWaterMark: 16,
      write(_chunk, _enc, cb) {
        cb(new Error('disk full'))
      },
    })
    await expect(exportCar(source, failing)).rejects.toThrow(/disk full/)
  })

  it('keeps the chunks of a value after its record when they came in one batch (raw after signed)', async () => {
    const car = await carOf(source)
    const blocks = await carBlocks(car)
    const first = (code: number) =>
      blocks.findIndex((b) => b.cid.code === code && bigBlocks.some((x) => x.cid.equals(b.cid)))
    expect(first(DAG_CBOR)).toBeLessThan(first(RAW))
  })
})
