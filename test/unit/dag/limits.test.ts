import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { CarWriter } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type Block,
  ChainWriter,
  chainId,
  checkCborLimits,
  cidFor,
  collectLinks,
  createRawBlock,
  createSignedBlock,
  DAG_CBOR,
  decodeSignedBlock,
  decodeValue,
  encodeValue,
  importCar,
  MAX_BLOCK_DEPTH,
  MAX_VALUE_DEPTH,
  SqliteBlockStore,
  VALUE_RECORD_TYPE,
  validateBlock,
  verifyStore,
} from '../../../src/dag/index.js'
import { blockTag, Signer } from '../../../src/identity/index.js'
import { decodeAnnouncement } from '../../../src/network/messages.js'

const signer = Signer.generate()
const chain = chainId(signer.did, 'deep')
const DEEP_TYPE = 'test.deep/v1'

/** `d` arrays around 1: depth d. */
function nest(d: number, leaf: unknown = 1): unknown {
  let v = leaf
  for (let i = 0; i < d; i++) v = [v]
  return v
}

/** Sign any record without createSignedBlock's checks (as a hostile or older node could). */
function handSigned(body: unknown, type = DEEP_TYPE, seq = 0, prev: unknown = null): Block {
  const unsigned = { v: 1, type, chain, seq, prev, author: signer.did, ts: 1_700_000_000_000, body }
  const sig = signer.signWithDomain(blockTag(type), dagCbor.encode(unsigned))
  const bytes = dagCbor.encode({ ...unsigned, sig })
  return { cid: cidFor(DAG_CBOR, bytes), bytes }
}

function errorOf(f: () => unknown): { code?: string; message?: string; name?: string } | undefined {
  try {
    f()
  } catch (err) {
    return err as { code?: string; message?: string; name?: string }
  }
  return undefined
}

async function carOf(blocks: Block[]): Promise<Uint8Array> {
  const { writer, out } = CarWriter.create([blocks[0]!.cid])
  const parts: Uint8Array[] = []
  const done = (async () => {
    for await (const p of out) parts.push(p)
  })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await done
  return Buffer.concat(parts)
}

describe('nesting depth: a protocol constant, checked before any recursion', () => {
  let dir: string
  let store: SqliteBlockStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'icn-limits-'))
    store = new SqliteBlockStore({ path: join(dir, 'blocks.db') })
    await store.open()
  })
  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('a block of exactly MAX_BLOCK_DEPTH levels is valid; one more is VALUE_TOO_DEEP', () => {
    // The block map is level 1, so a body of MAX_BLOCK_DEPTH - 1 arrays makes MAX_BLOCK_DEPTH levels.
    const atLimit = handSigned(nest(MAX_BLOCK_DEPTH - 1))
    expect(validateBlock(atLimit.cid, atLimit.bytes).kind).toBe('signed')
    const over = handSigned(nest(MAX_BLOCK_DEPTH))
    expect(errorOf(() => validateBlock(over.cid, over.bytes))?.code).toBe('VALUE_TOO_DEEP')
    expect(errorOf(() => decodeSignedBlock(over.bytes))?.code).toBe('VALUE_TOO_DEEP')
    // Maps count as arrays do; CIDs (tag 42) and byte strings are leaves.
    let mapped: unknown = { link: atLimit.cid, bytes: new Uint8Array(3) }
    for (let i = 1; i < MAX_BLOCK_DEPTH - 1; i++) mapped = i % 2 ? [mapped] : { k: mapped }
    const maps = handSigned(mapped)
    expect(validateBlock(maps.cid, maps.bytes).kind).toBe('signed')
    const mapsOver = handSigned({ k: mapped })
    expect(errorOf(() => validateBlock(mapsOver.cid, mapsOver.bytes))?.code).toBe('VALUE_TOO_DEEP')
  })

  it('createSignedBlock refuses to encode a body deeper than the block rule allows', () => {
    const fields = { type: DEEP_TYPE, chain, seq: 0, prev: null, ts: 1 }
    expect(
      createSignedBlock(signer, { ...fields, body: nest(MAX_BLOCK_DEPTH - 1) }).bytes.length,
    ).toBeGreaterThan(0)
    expect(errorOf(() => createSignedBlock(signer, { ...fields, body: nest(MAX_BLOCK_DEPTH) }))?.code).toBe(
      'VALUE_TOO_DEEP',
    )
  })

  it('a value of MAX_VALUE_DEPTH levels is stored and read back; one more is refused before encoding', async () => {
    const writer = new ChainWriter({ name: 'node' }, { store, signer })
    const value = nest(MAX_VALUE_DEPTH, 'leaf')
    const r = await writer.appendValue(value)
    const block = decodeSignedBlock(await store.get(r.cid))
    expect(await decodeValue(r.cid, block.body, (c) => store.get(c))).toEqual(value)
    expect(errorOf(() => encodeValue(nest(MAX_VALUE_DEPTH + 1)))?.code).toBe('VALUE_TOO_DEEP')
    await expect(writer.appendValue(nest(MAX_VALUE_DEPTH + 1))).rejects.toMatchObject({
      code: 'VALUE_TOO_DEEP',
    })
    expect((await verifyStore(store)).bad).toEqual([])
  })

  it('a chunked value is read only if it nests no deeper than an inline one could; else INCOMPLETE_VALUE', async () => {
    // Raw chunks are opaque to the block rules, so an author can chunk anything: the reader applies the limit.
    const big = 'x'.repeat(1024 * 1024)
    const deepBytes = dagCbor.encode(nest(MAX_BLOCK_DEPTH - 1, big))
    const chunk = createRawBlock(deepBytes)
    const body = { chunked: { size: deepBytes.length, parts: [chunk.cid] } }
    const record = handSigned(body, VALUE_RECORD_TYPE)
    await store.putMany([record, chunk])
    await expect(decodeValue(record.cid, body, (c) => store.get(c))).rejects.toMatchObject({
      code: 'INCOMPLETE_VALUE',
      message: expect.stringMatching(/deeper than the limit of 254/),
    })
    const okBytes = dagCbor.encode(nest(MAX_BLOCK_DEPTH - 2, big))
    expect(
      await decodeValue(
        record.cid,
        { chunked: { size: okBytes.length, parts: [record.cid] } },
        async () => okBytes,
      ),
    ).toEqual(nest(MAX_BLOCK_DEPTH - 2, big))
  })

  it('store.putMany (gossip, sync, HTTP) and importCar refuse a too-deep signed block; nothing is stored', async () => {
    const over = handSigned(nest(MAX_BLOCK_DEPTH))
    await expect(store.putMany([over], { source: 'gossip' })).rejects.toMatchObject({
      code: 'VALUE_TOO_DEEP',
    })
    await expect(importCar(store, await carOf([over]))).rejects.toMatchObject({
      code: 'INVALID_CAR',
      details: expect.objectContaining({ code: 'VALUE_TOO_DEEP', cid: over.cid.toString() }),
    })
    expect(await store.has(over.cid)).toBe(false)
    const atLimit = handSigned(nest(MAX_BLOCK_DEPTH - 1))
    expect((await importCar(store, await carOf([atLimit]))).stored).toBe(1)
  })

  it('collectLinks finds a CID at any depth the rule allows (the old walk stopped at 64)', () => {
    const target = handSigned('t')
    const b = handSigned(nest(MAX_BLOCK_DEPTH - 2, target.cid))
    const v = validateBlock(b.cid, b.bytes)
    expect(v.kind === 'signed' && v.links.map(String)).toEqual([target.cid.toString()])
    expect(collectLinks(decodeSignedBlock(b.bytes)).map(String)).toEqual([target.cid.toString()])
  })

  it('a gossip or exchange envelope nested deeply is refused as malformed before it is decoded', () => {
    const N = 100_000
    const deep = new Uint8Array(N + 1).fill(0x81)
    deep[N] = 0x01
    expect(errorOf(() => decodeAnnouncement(deep, 4 * 1024 * 1024))).toMatchObject({
      code: 'INVALID_MESSAGE',
      message: expect.stringMatching(/deeper than the limit of 16/),
    })
  })

  it('refuses indefinite-length items', () => {
    // [_ 1] : an indefinite array, which a decoder would open without a declared count.
    expect(errorOf(() => checkCborLimits(Uint8Array.from([0x9f, 0x01, 0xff])))?.code).toBe('MALFORMED_BLOCK')
  })

  it('gives the typed error, not a RangeError, on a 0.5 MB stack for 100,000 levels', async () => {
    const limits = pathToFileURL(join(import.meta.dirname, '../../../src/dag/index.ts')).href
    const jsonBody = pathToFileURL(join(import.meta.dirname, '../../../src/api/json-body.ts')).href
    const source = `
      const { parentPort, workerData } = require('node:worker_threads')
      ;(async () => {
        const { register } = await import('tsx/esm/api')
        register()
        const dag = await import(workerData.limits)
        const { parseJsonBody } = await import(workerData.jsonBody)
        const dagCbor = await import('@ipld/dag-cbor')
        const N = 100000
        const bytes = new Uint8Array(N + 1)
        bytes.fill(0x81, 0, N) // N one-element arrays...
        bytes[N] = 0x01 // ...around the integer 1
        let value = 1
        for (let i = 0; i < N; i++) value = [value]
        const text = new TextEncoder().encode('['.repeat(N) + '1' + ']'.repeat(N))
        const codeOf = (f) => { try { f(); return 'none' } catch (e) { return e.code ?? e.name } }
        parentPort.postMessage({
          // The control: on this stack the recursive decoder itself cannot go this deep.
          decoder: codeOf(() => dagCbor.decode(bytes)),
          validate: codeOf(() => dag.validateBlock(dag.cidFor(dag.DAG_CBOR, bytes), bytes)),
          decodeStored: codeOf(() => dag.decodeSignedBlock(bytes)),
          value: codeOf(() => dag.encodeValue(value)),
          json: codeOf(() => parseJsonBody(text)),
        })
      })().catch((e) => parentPort.postMessage({ failed: String(e && e.stack) }))
    `
    const worker = new Worker(source, {
      eval: true,
      workerData: { limits, jsonBody },
      resourceLimits: { stackSizeMb: 0.5 },
    })
    try {
      const result = await new Promise((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
      })
      expect(result).toEqual({
        decoder: 'RangeError',
        validate: 'VALUE_TOO_DEEP',
        decodeStored: 'VALUE_TOO_DEEP',
        value: 'VALUE_TOO_DEEP',
        json: 'VALUE_TOO_DEEP',
      })
    } finally {
      await worker.terminate()
    }
  })
})

describe('integers and text in blocks', () => {
  it('refuses integers outside ±(2^53 − 1): UNSAFE_INTEGER; accepts the bounds', () => {
    for (const n of [2n ** 53n, -(2n ** 53n), 123456789012345678901234567890n % 2n ** 64n]) {
      const b = handSigned({ inline: n }, VALUE_RECORD_TYPE)
      expect(errorOf(() => validateBlock(b.cid, b.bytes))?.code).toBe('UNSAFE_INTEGER')
    }
    for (const n of [2 ** 53 - 1, -(2 ** 53 - 1)]) {
      const b = handSigned({ inline: n }, VALUE_RECORD_TYPE)
      expect(validateBlock(b.cid, b.bytes).kind).toBe('signed')
    }
    expect(errorOf(() => encodeValue(2n ** 53n))?.code).toBe('UNSAFE_INTEGER')
  })

  it('refuses a signed block whose text string is not UTF-8: MALFORMED_BLOCK, saying so', () => {
    // Sign bytes holding "h\xc3(lo" where the encoder wrote "hellA": same length, invalid UTF-8.
    const patch = (bytes: Uint8Array): Uint8Array => {
      const out = Buffer.from(bytes)
      const at = out.indexOf(Buffer.from('hellA'))
      expect(at).toBeGreaterThan(0)
      out.set([0x68, 0xc3, 0x28, 0x6c, 0x6f], at)
      return out
    }
    const unsigned = {
      v: 1,
      type: VALUE_RECORD_TYPE,
      chain,
      seq: 0,
      prev: null,
      author: signer.did,
      ts: 1,
      body: { inline: 'hellA' },
    }
    const sig = signer.signWithDomain(blockTag(VALUE_RECORD_TYPE), patch(dagCbor.encode(unsigned)))
    const bytes = patch(dagCbor.encode({ ...unsigned, sig }))
    const err = errorOf(() => validateBlock(cidFor(DAG_CBOR, bytes), bytes))
    expect(err?.code).toBe('MALFORMED_BLOCK')
    expect(err?.message).toMatch(/not valid UTF-8/)
  })

  it('refuses lone surrogates in values and map keys before encoding (the encoder would write U+FFFD)', () => {
    expect(errorOf(() => encodeValue('\ud800'))?.code).toBe('INVALID_UNICODE')
    expect(errorOf(() => encodeValue({ 'a\udc00': 1 }))?.code).toBe('INVALID_UNICODE')
    expect(encodeValue('😀 \ud83d\ude00').size).toBeGreaterThan(0)
  })
})
