import { CarWriter } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type Block,
  chainId,
  checkCborLimits,
  cidFor,
  DAG_CBOR,
  MAX_BLOCK_DEPTH,
  MAX_VALUE_DEPTH,
  VALUE_RECORD_TYPE,
} from '../../src/dag/index.js'
import { blockTag, Signer } from '../../src/identity/index.js'
import type { IcnNode } from '../../src/node/index.js'
import { type ApiNode, startApiNode } from '../helpers/node.js'

const API_KEY = 'test-api-key-0123456789'

let api: ApiNode
let node: IcnNode

beforeAll(async () => {
  api = await startApiNode(API_KEY, 'icn-values-')
  node = api.node
})

afterAll(async () => {
  await api?.stop()
})

function nest(d: number, leaf: unknown = 1): unknown {
  let v = leaf
  for (let i = 0; i < d; i++) v = [v]
  return v
}

/** POST a raw JSON body to /v1/dag/blocks. */
async function post(body: string | Uint8Array): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${node.apiUrl}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body,
  })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

async function get(path: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${node.apiUrl}${path}`)
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

/** Store `value` and read it back through GET /v1/dag/values/:cid. */
async function roundTrip(valueText: string): Promise<unknown> {
  const put = await post(`{"value":${valueText}}`)
  expect(put.status).toBe(201)
  const got = await get(`/v1/dag/values/${put.json.cid}`)
  expect(got.status).toBe(200)
  return got.json.value
}

describe('values are kept exactly or refused with a typed 400', () => {
  it('a value at MAX_VALUE_DEPTH is stored, read back as JSON (value and block) and verifies', async () => {
    for (const leaf of ['leaf', 'x'.repeat(1024 * 1024 + 10)]) {
      // inline, then chunked (over 1 MiB)
      const value = nest(MAX_VALUE_DEPTH, leaf)
      const put = await post(JSON.stringify({ value }))
      expect(put.status).toBe(201)
      const got = await get(`/v1/dag/values/${put.json.cid}`)
      expect(got.status).toBe(200)
      expect(got.json.value).toEqual(value)
      const block = await get(`/v1/dag/blocks/${put.json.cid}?format=json`)
      expect(block.status).toBe(200)
    }
    const verify = await fetch(`${node.apiUrl}/v1/dag/verify`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}` },
    })
    expect(((await verify.json()) as { bad: unknown[] }).bad).toEqual([])
  })

  it('one level more is VALUE_TOO_DEEP (400), also far deeper, and nothing is written', async () => {
    const before = (await get('/v1/node')).json.head
    for (const depth of [MAX_VALUE_DEPTH + 1, 100_000]) {
      const r = await post(`{"value":${'['.repeat(depth)}1${']'.repeat(depth)}}`)
      expect(r.status).toBe(400)
      expect(r.json.code).toBe('VALUE_TOO_DEEP')
      expect(typeof r.json.requestId).toBe('string')
    }
    expect((await get('/v1/node')).json.head).toEqual(before)
  })

  it('a block at MAX_BLOCK_DEPTH from another author is readable as JSON, block and value', async () => {
    // What the store accepts from any edge must be readable: a hand-signed value record whose inline value
    // fills the block to the limit (block map 1, body map 2, value levels 3..MAX_BLOCK_DEPTH).
    const author = Signer.generate()
    const value = nest(MAX_BLOCK_DEPTH - 3, { link: 'x' }) // 254 levels
    const unsigned = {
      v: 1,
      type: VALUE_RECORD_TYPE,
      chain: chainId(author.did, 'other'),
      seq: 0,
      prev: null,
      author: author.did,
      ts: 1,
      body: { inline: value },
    }
    const sig = author.signWithDomain(blockTag(VALUE_RECORD_TYPE), dagCbor.encode(unsigned))
    const bytes = dagCbor.encode({ ...unsigned, sig })
    const block: Block = { cid: cidFor(DAG_CBOR, bytes), bytes }
    // Exactly at the limit: one level less allowed would refuse it.
    expect(() => checkCborLimits(bytes, MAX_BLOCK_DEPTH - 1)).toThrow(/deeper than the limit/)
    const { writer, out } = CarWriter.create([block.cid])
    const parts: Uint8Array[] = []
    const drained = (async () => {
      for await (const p of out) parts.push(p)
    })()
    await writer.put(block)
    await writer.close()
    await drained
    const imported = await fetch(`${node.apiUrl}/v1/dag/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/vnd.ipld.car' },
      body: Buffer.concat(parts),
    })
    expect(imported.status, await imported.clone().text()).toBe(200)
    const asJson = await get(`/v1/dag/blocks/${block.cid}?format=json`)
    expect(asJson.status).toBe(200)
    const got = await get(`/v1/dag/values/${block.cid}`)
    expect(got.status).toBe(200)
    expect(got.json.value).toEqual(value)
  })

  it('refuses integers beyond ±(2^53 − 1) rather than rounding them: UNSAFE_INTEGER', async () => {
    for (const n of [
      '9007199254740993',
      '123456789012345678901234567890',
      '-9007199254740992',
      '9007199254740992',
    ]) {
      const r = await post(`{"value":{"n":[${n}]}}`)
      expect(r.status, n).toBe(400)
      expect(r.json.code).toBe('UNSAFE_INTEGER')
    }
    expect(await roundTrip('[9007199254740991,-9007199254740991]')).toEqual([
      9007199254740991, -9007199254740991,
    ])
  })

  it('reads numbers with a fraction or exponent as doubles, -0 as 0, and refuses NaN/Infinity as not JSON', async () => {
    expect(await roundTrip('[1.5,1e3,-0,2.5e-3,1e20]')).toEqual([1.5, 1000, 0, 0.0025, 1e20])
    // Digits inside strings are text, never numbers.
    expect(await roundTrip('"123456789012345678901234567890"')).toBe('123456789012345678901234567890')
    for (const bad of ['NaN', 'Infinity', '-Infinity'])
      expect((await post(`{"value":${bad}}`)).json.code).toBe('INVALID_JSON')
  })

  it('refuses strings that are not valid Unicode: INVALID_UNICODE', async () => {
    for (const body of ['{"value":"\\ud800"}', '{"value":{"\\udfff":1}}', '{"value":["a\\ud83d"]}']) {
      const r = await post(body)
      expect(r.status, body).toBe(400)
      expect(r.json.code).toBe('INVALID_UNICODE')
    }
    const invalidUtf8 = Buffer.concat([
      Buffer.from('{"value":"a'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}'),
    ])
    const r = await post(invalidUtf8)
    expect(r.status).toBe(400)
    expect(r.json.code).toBe('INVALID_UNICODE')
    expect(await roundTrip('"\\ud83d\\ude00 é"')).toBe('😀 é')
  })
})
