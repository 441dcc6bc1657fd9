import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as dagCbor from '@ipld/dag-cbor'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type Block,
  chainId,
  cidFor,
  createSignedBlock,
  DAG_CBOR,
  decodeSignedBlock,
  encodeValue,
  SqliteBlockStore,
  VALUE_RECORD_TYPE,
  verifyStore,
} from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'

describe('verifyStore', () => {
  let dir: string
  let path: string
  let store: SqliteBlockStore
  let records: Block[]
  let valueBlocks: Block[]

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'icn-verify-'))
    path = join(dir, 'blocks.db')
    store = new SqliteBlockStore({ path })
    await store.open()
    const signer = Signer.generate()
    const chain = chainId(signer.did, 'main')
    records = []
    let prev = null
    for (let seq = 0; seq < 4; seq++) {
      const b = createSignedBlock(signer, {
        type: 'test.note/v1',
        chain,
        seq,
        prev,
        ts: 1_700_000_000_000,
        body: { seq },
      })
      await store.put(b)
      records.push(b)
      prev = b.cid
    }
    const { body, chunks } = encodeValue(new Uint8Array(1024 * 1024 + 100).fill(7))
    const record = createSignedBlock(signer, { type: VALUE_RECORD_TYPE, chain, seq: 4, prev, ts: 1, body })
    await store.putMany([record, ...chunks])
    valueBlocks = [record, ...chunks]
  })

  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  /** Edit the database file directly, with the store closed. */
  async function tamper(sql: string, ...params: unknown[]): Promise<void> {
    await store.close()
    const db = new Database(path)
    try {
      expect(db.prepare(sql).run(...params).changes).toBe(1)
    } finally {
      db.close()
    }
    store = new SqliteBlockStore({ path })
    await store.open()
  }

  it('a clean store has nothing bad and every block is checked', async () => {
    const progress: number[] = []
    const res = await verifyStore(store, { onProgress: (n) => progress.push(n) })
    expect(res.bad).toEqual([])
    expect(res.checked).toBe(records.length + valueBlocks.length)
    expect(progress.at(-1)).toBe(res.checked)
  })

  it('reports a signed block whose bytes were changed in the database file as CID_MISMATCH', async () => {
    const victim = records[2]!
    const bytes = victim.bytes.slice()
    bytes[bytes.length - 3]! ^= 0x40
    await tamper('UPDATE blocks SET data = ? WHERE cid = ?', bytes, victim.cid.bytes)
    const res = await verifyStore(store)
    expect(res.checked).toBe(records.length + valueBlocks.length)
    expect(res.bad).toEqual([
      { cid: victim.cid.toString(), code: 'CID_MISMATCH', message: expect.any(String) },
    ])
  })

  it('reports a block stored before the depth limit as VALUE_TOO_DEEP, the same on every run', async () => {
    // 3,000 levels: what a warm node once accepted and a cold one could not decode (a RangeError, or not).
    const victim = records[3]!
    const depth = 3000
    const deep = new Uint8Array(depth + 1).fill(0x81)
    deep[depth] = 0x01
    const cid = cidFor(DAG_CBOR, deep)
    await tamper(
      'INSERT INTO blocks (cid, codec, size, data, stored_at) VALUES (?, ?, ?, ?, 0)',
      cid.bytes,
      DAG_CBOR,
      deep.length,
      deep,
    )
    const runs = [await verifyStore(store), await verifyStore(store)]
    for (const res of runs)
      expect(res.bad).toEqual([
        { cid: cid.toString(), code: 'VALUE_TOO_DEEP', message: expect.stringMatching(/limit of 256/) },
      ])
    expect(victim).toBeDefined()
  })

  it('reports a raw chunk whose bytes were changed as CID_MISMATCH', async () => {
    const chunk = valueBlocks[1]!
    await tamper('UPDATE blocks SET data = zeroblob(100) WHERE cid = ?', chunk.cid.bytes)
    const res = await verifyStore(store)
    expect(res.bad.map((b) => [b.cid, b.code])).toEqual([[chunk.cid.toString(), 'CID_MISMATCH']])
  })

  it('reports a block stored under a matching CID but with a forged signature as INVALID_SIGNATURE', async () => {
    const victim = records[1]!
    const forged = dagCbor.encode({ ...decodeSignedBlock(victim.bytes), body: { seq: 1000 } })
    const forgedCid = cidFor(DAG_CBOR, forged)
    await tamper(
      'UPDATE blocks SET cid = ?, data = ? WHERE cid = ?',
      forgedCid.bytes,
      forged,
      victim.cid.bytes,
    )
    const res = await verifyStore(store)
    expect(res.bad.map((b) => [b.cid, b.code])).toEqual([[forgedCid.toString(), 'INVALID_SIGNATURE']])
  })

  it('reports a chunk whose record was deleted as UNANCHORED_CHUNK', async () => {
    await store.delete(valueBlocks[0]!.cid)
    const res = await verifyStore(store)
    expect(res.bad.map((b) => b.code)).toEqual(valueBlocks.slice(1).map(() => 'UNANCHORED_CHUNK'))
    expect(res.bad.map((b) => b.cid).sort()).toEqual(
      valueBlocks
        .slice(1)
        .map((b) => b.cid.toString())
        .sort(),
    )
  })

  it('honours an aborted signal', async () => {
    await expect(verifyStore(store, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'ABORTED',
    })
  })
})
