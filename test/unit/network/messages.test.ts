import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import * as Digest from 'multiformats/hashes/digest'
import { describe, expect, it } from 'vitest'
import {
  type Block,
  CID,
  chainId,
  createRawBlock,
  createSignedBlock,
  DAG_CBOR,
  MAX_BLOCK_BYTES,
} from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'
import { ExchangeError, InvalidMessageError, type RejectReason } from '../../../src/network/errors.js'
import {
  decodeAnnouncement,
  decodeRequest,
  decodeResponse,
  type ExchangeRequest,
  encodeAnnouncement,
  encodeRequest,
  encodeResponse,
  MAX_BLOCKS_PER_ANNOUNCEMENT,
  MAX_HEADS_PER_RESPONSE,
  MAX_REQUEST_BYTES,
} from '../../../src/network/messages.js'

const signer = Signer.generate()
const chain = chainId(signer.did, 'node')
const LIMIT = 1 << 20

function signed(seq: number, prev: Block | null, body: unknown = { seq }): Block {
  const b = createSignedBlock(signer, {
    type: 'icn.value/v1',
    chain,
    seq,
    prev: prev ? prev.cid : null,
    ts: 1_700_000_000_000 + seq,
    body,
  })
  return { cid: b.cid, bytes: b.bytes }
}

const b0 = signed(0, null)
const b1 = signed(1, b0)
const chunk = createRawBlock(new Uint8Array([1, 2, 3]))

/** The InvalidMessageError `fn` throws (fails the test if it throws something else or nothing). */
function refusal(fn: () => unknown): InvalidMessageError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidMessageError)
    expect((err as InvalidMessageError).code).toBe('INVALID_MESSAGE')
    return err as InvalidMessageError
  }
  throw new Error('expected an InvalidMessageError, nothing was thrown')
}

function reasonOf(fn: () => unknown): RejectReason {
  const err = refusal(fn)
  expect(err.details).toEqual({ reason: err.reason })
  return err.reason
}

const cbor = (v: unknown): Uint8Array => dagCbor.encode(v)
const wire = (b: Block): { cid: CID; bytes: Uint8Array } => ({ cid: b.cid, bytes: b.bytes })
const sha256 = (bytes: Uint8Array): Uint8Array => createHash('sha256').update(bytes).digest()

describe('announcements', () => {
  it('round-trips one block, many blocks, raw chunks and the 256-block maximum', () => {
    for (const blocks of [[b0], [b0, b1, chunk], Array.from({ length: 256 }, () => chunk)]) {
      const ann = decodeAnnouncement(encodeAnnouncement(blocks), LIMIT)
      expect(ann.v).toBe(1)
      expect(ann.blocks.map((b) => b.cid.toString())).toEqual(blocks.map((b) => b.cid.toString()))
      expect(ann.blocks.map((b) => Buffer.from(b.bytes))).toEqual(blocks.map((b) => Buffer.from(b.bytes)))
      for (const b of ann.blocks) expect(CID.asCID(b.cid)).toBeTruthy()
    }
    expect(MAX_BLOCKS_PER_ANNOUNCEMENT).toBe(256)
  })

  it('accepts a message of exactly the limit and refuses one byte more by byte length: oversized', () => {
    const data = encodeAnnouncement([b0, b1])
    expect(decodeAnnouncement(data, data.length).blocks).toHaveLength(2)
    expect(reasonOf(() => decodeAnnouncement(data, data.length - 1))).toBe('oversized')
    // checked before decoding: an oversized message of garbage is oversized, not malformed
    expect(reasonOf(() => decodeAnnouncement(new Uint8Array(100).fill(0xff), 99))).toBe('oversized')
  })

  it('refuses bytes that are not DAG-CBOR: malformed', () => {
    for (const data of [
      new Uint8Array(0),
      new TextEncoder().encode('not cbor at all'),
      Uint8Array.from([0xa1, 0x61]), // truncated map
      Uint8Array.from([0xf9, 0x7e, 0x00]), // NaN: not allowed in DAG-CBOR
      new Uint8Array(Buffer.concat([cbor({ v: 1, blocks: [wire(b0)] }), cbor(1)])), // trailing bytes
    ])
      expect(reasonOf(() => decodeAnnouncement(data, LIMIT))).toBe('malformed')
  })

  it('refuses the wrong shape: malformed', () => {
    const blocks = [wire(b0)]
    for (const v of [
      null,
      1,
      'announcement',
      [1, blocks],
      cbor({ v: 1, blocks }), // bytes, not a map
      {},
      { v: 1 }, // missing blocks
      { blocks }, // missing v
      { v: 1, blocks, extra: true }, // extra key
      { v: 2, blocks },
      { v: '1', blocks },
      { v: 1, blocks: [] }, // no blocks
      { v: 1, blocks: wire(b0) }, // not a list
      { v: 1, blocks: null },
      { v: 1, blocks: Array.from({ length: 257 }, () => wire(chunk)) },
      { v: 1, blocks: [b0.bytes] }, // element not a map
      { v: 1, blocks: [[b0.cid, b0.bytes]] },
      { v: 1, blocks: [{ cid: b0.cid }] },
      { v: 1, blocks: [{ bytes: b0.bytes }] },
      { v: 1, blocks: [{ ...wire(b0), seq: 0 }] }, // extra key in an element
      { v: 1, blocks: [{ cid: b0.cid.toString(), bytes: b0.bytes }] }, // cid as a string
      { v: 1, blocks: [{ cid: b0.cid.bytes, bytes: b0.bytes }] }, // cid as bytes, not tag 42
      { v: 1, blocks: [{ cid: b0.cid, bytes: 'bytes' }] },
      { v: 1, blocks: [{ cid: b0.cid, bytes: [1, 2, 3] }] },
    ])
      expect(
        reasonOf(() => decodeAnnouncement(cbor(v), LIMIT)),
        JSON.stringify(v)?.slice(0, 80),
      ).toBe('malformed')
  })

  it('names the element at fault', () => {
    const err = refusal(() =>
      decodeAnnouncement(cbor({ v: 1, blocks: [wire(b0), { cid: 'x', bytes: b0.bytes }] }), LIMIT),
    )
    expect(err.message).toMatch(/blocks\[1\]/)
  })

  it('refuses CIDs the store would not accept (v0, other hashes, other codecs): bad_cid', () => {
    const bytes = b0.bytes
    const bad = [
      CID.createV0(Digest.create(0x12, sha256(bytes))),
      CID.createV1(DAG_CBOR, Digest.create(0x11, createHash('sha1').update(bytes).digest())),
      CID.createV1(DAG_CBOR, Digest.create(0x00, Uint8Array.from([1, 2, 3]))), // identity
      CID.createV1(DAG_CBOR, Digest.create(0x13, createHash('sha512').update(bytes).digest())),
      CID.createV1(0x0129, Digest.create(0x12, sha256(bytes))), // dag-json
      CID.createV1(DAG_CBOR, Digest.create(0x12, sha256(bytes).subarray(0, 20))), // truncated sha2-256
    ]
    for (const cid of bad) {
      const err = refusal(() => decodeAnnouncement(cbor({ v: 1, blocks: [wire(b1), { cid, bytes }] }), LIMIT))
      expect(err.reason, cid.toString()).toBe('bad_cid')
      expect(err.message).toMatch(/blocks\[1\]/)
    }
  })

  it('leaves a CID that does not match its bytes to the store (the wire format only checks its kind)', () => {
    const ann = decodeAnnouncement(encodeAnnouncement([{ cid: b0.cid, bytes: b1.bytes }]), LIMIT)
    expect(ann.blocks[0]!.cid.equals(b0.cid)).toBe(true)
  })

  it('refuses a block over 2 MiB inside a message under the limit: oversized', () => {
    const max = createRawBlock(new Uint8Array(MAX_BLOCK_BYTES))
    expect(decodeAnnouncement(encodeAnnouncement([max]), 4 * LIMIT).blocks[0]!.bytes.length).toBe(
      MAX_BLOCK_BYTES,
    )
    const over = new Uint8Array(MAX_BLOCK_BYTES + 1)
    const data = cbor({ v: 1, blocks: [{ cid: chunk.cid, bytes: over }] })
    expect(reasonOf(() => decodeAnnouncement(data, 4 * LIMIT))).toBe('oversized')
  })
})

describe('exchange requests', () => {
  const MAX = 16

  it('round-trips every op', () => {
    const reqs: ExchangeRequest[] = [
      { op: 'heads' },
      { op: 'heads', after: chain },
      { op: 'heads', after: '' },
      { op: 'range', chain, from: 0, limit: 1 },
      { op: 'range', chain, from: Number.MAX_SAFE_INTEGER, limit: 1_000_000 },
      { op: 'get', cids: [] },
      { op: 'get', cids: Array.from({ length: MAX }, (_, i) => createRawBlock(Uint8Array.of(i)).cid) },
      { op: 'peers' },
    ]
    for (const req of reqs) {
      const got = decodeRequest(encodeRequest(req), MAX)
      expect(dagCbor.encode(got)).toEqual(dagCbor.encode(req))
    }
    const get = decodeRequest(encodeRequest({ op: 'get', cids: [b0.cid, chunk.cid] }), MAX)
    expect(get.op === 'get' && get.cids.every((c) => CID.asCID(c) !== null)).toBe(true)
  })

  it('refuses bad arguments of each op: malformed', () => {
    const bad: unknown[] = [
      // any op
      null,
      [],
      'heads',
      {},
      { op: 1 },
      { op: null },
      { op: 'HEADS' },
      { op: 'delete', cid: b0.cid }, // unknown op
      // heads
      { op: 'heads', after: 1 },
      { op: 'heads', after: null },
      { op: 'heads', after: b0.cid },
      { op: 'heads', limit: 10 },
      // range
      { op: 'range' },
      { op: 'range', chain, from: 0 },
      { op: 'range', chain, limit: 1 },
      { op: 'range', from: 0, limit: 1 },
      { op: 'range', chain: 1, from: 0, limit: 1 },
      { op: 'range', chain: 'x'.repeat(1025), from: 0, limit: 1 },
      { op: 'range', chain, from: -1, limit: 1 },
      { op: 'range', chain, from: 0.5, limit: 1 },
      { op: 'range', chain, from: '0', limit: 1 },
      { op: 'range', chain, from: 2 ** 53, limit: 1 },
      { op: 'range', chain, from: 0, limit: 0 },
      { op: 'range', chain, from: 0, limit: -1 },
      { op: 'range', chain, from: 0, limit: 1_000_001 },
      { op: 'range', chain, from: 0, limit: 1.5 },
      { op: 'range', chain, from: 0, limit: 1, to: 9 },
      // get
      { op: 'get' },
      { op: 'get', cids: b0.cid },
      { op: 'get', cids: [b0.cid.toString()] },
      { op: 'get', cids: [b0.cid, null] },
      { op: 'get', cids: [b0.cid.bytes] },
      { op: 'get', cids: [b0.cid], more: true },
      { op: 'get', cids: Array.from({ length: MAX + 1 }, () => b0.cid) }, // too many
      // peers
      { op: 'peers', all: true },
    ]
    for (const v of bad)
      expect(
        reasonOf(() => decodeRequest(cbor(v), MAX)),
        JSON.stringify(v)?.slice(0, 80),
      ).toBe('malformed')
  })

  it('says which op is unknown, and how many CIDs a get may carry', () => {
    expect(refusal(() => decodeRequest(cbor({ op: 'delete' }), MAX)).message).toMatch(/unknown op "delete"/)
    const tooMany = cbor({ op: 'get', cids: Array.from({ length: MAX + 1 }, () => b0.cid) })
    expect(refusal(() => decodeRequest(tooMany, MAX)).message).toMatch(/at most 16/)
    expect(decodeRequest(tooMany, MAX + 1).op).toBe('get')
  })

  it('refuses a request over 64 KiB before decoding it: oversized', () => {
    const big = cbor({ op: 'heads', after: 'x'.repeat(MAX_REQUEST_BYTES) })
    expect(big.length).toBeGreaterThan(MAX_REQUEST_BYTES)
    expect(reasonOf(() => decodeRequest(big, MAX))).toBe('oversized')
    expect(reasonOf(() => decodeRequest(new Uint8Array(MAX_REQUEST_BYTES + 1), MAX))).toBe('oversized')
    // exactly 64 KiB is decoded (and here refused for its shape only)
    expect(reasonOf(() => decodeRequest(new Uint8Array(MAX_REQUEST_BYTES), MAX))).toBe('malformed')
  })

  it('refuses bytes that are not DAG-CBOR: malformed', () => {
    expect(reasonOf(() => decodeRequest(new TextEncoder().encode('{"op":"heads"}'), MAX))).toBe('malformed')
    expect(reasonOf(() => decodeRequest(new Uint8Array(0), MAX))).toBe('malformed')
  })
})

describe('exchange responses', () => {
  const head = { chain, seq: 1, cid: b1.cid }

  it('round-trips the reply of every op', () => {
    const heads = decodeResponse(encodeResponse({ heads: [head], more: true }), 'heads', LIMIT)
    expect('heads' in heads && heads.more).toBe(true)
    expect('heads' in heads && heads.heads.map((h) => ({ ...h, cid: h.cid.toString() }))).toEqual([
      { chain, seq: 1, cid: b1.cid.toString() },
    ])
    expect(decodeResponse(encodeResponse({ heads: [], more: false }), 'heads', LIMIT)).toEqual({
      heads: [],
      more: false,
    })
    for (const op of ['range', 'get'] as const) {
      const res = decodeResponse(encodeResponse({ blocks: [b0, b1, chunk], more: false }), op, LIMIT)
      expect('blocks' in res && res.blocks.map((b) => b.cid.toString())).toEqual(
        [b0, b1, chunk].map((b) => b.cid.toString()),
      )
      expect('blocks' in res && res.more).toBe(false)
      expect(decodeResponse(encodeResponse({ blocks: [], more: true }), op, LIMIT)).toEqual({
        blocks: [],
        more: true,
      })
    }
    const peers = [{ peerId: '12D3KooWabc', addrs: ['/ip4/127.0.0.1/tcp/1'] }]
    expect(decodeResponse(encodeResponse({ peers }), 'peers', LIMIT)).toEqual({ peers })
  })

  it('turns an error reply into an ExchangeError carrying the peer code, for any op', () => {
    const data = encodeResponse({
      error: { code: 'INVALID_MESSAGE', message: 'request: expected {op, ...}' },
    })
    for (const op of ['heads', 'range', 'get', 'peers'] as const) {
      let err: unknown
      try {
        decodeResponse(data, op, LIMIT)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(ExchangeError)
      expect(err).toMatchObject({ code: 'EXCHANGE_FAILED', details: { code: 'INVALID_MESSAGE' } })
      expect((err as Error).message).toContain(`peer refused ${op}: INVALID_MESSAGE`)
    }
    // the peer's message is cut short
    const long = encodeResponse({ error: { code: 'X', message: 'y'.repeat(10_000) } })
    expect(() => decodeResponse(long, 'heads', LIMIT)).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/^.{1,400}$/s) }),
    )
  })

  it('refuses wrong shapes per op: malformed', () => {
    const cases: [ExchangeRequest['op'], unknown][] = [
      ['heads', null],
      ['heads', []],
      ['heads', {}],
      ['heads', { heads: [] }],
      ['heads', { heads: [], more: 'no' }],
      ['heads', { heads: {}, more: false }],
      ['heads', { heads: [], more: false, extra: 1 }],
      ['heads', { blocks: [], more: false }], // a reply of another op
      ['heads', { heads: [{ chain, seq: 1 }], more: false }],
      ['heads', { heads: [{ chain, seq: 1, cid: b1.cid.toString() }], more: false }],
      ['heads', { heads: [{ chain, seq: -1, cid: b1.cid }], more: false }],
      ['heads', { heads: [{ chain, seq: 1.5, cid: b1.cid }], more: false }],
      ['heads', { heads: [{ chain: 1, seq: 1, cid: b1.cid }], more: false }],
      ['heads', { heads: [{ ...head, author: signer.did }], more: false }],
      ['heads', { error: 'nope' }], // an error that is not {code, message} is no error reply
      ['range', { blocks: [] }],
      ['range', { blocks: [], more: 1 }],
      ['range', { blocks: null, more: false }],
      ['range', { blocks: [wire(b0)], more: false, heads: [] }],
      ['range', { heads: [], more: false }],
      ['range', { blocks: [{ cid: b0.cid }], more: false }],
      ['range', { blocks: [{ cid: 'b0', bytes: b0.bytes }], more: false }],
      ['get', { blocks: [b0.bytes], more: false }],
      ['get', { peers: [] }],
      ['peers', {}],
      ['peers', { peers: {} }],
      ['peers', { peers: [], more: false }],
      ['peers', { peers: [{ peerId: 1, addrs: [] }] }],
      ['peers', { peers: [{ peerId: 'p', addrs: 'x' }] }],
      ['peers', { peers: ['p'] }],
    ]
    for (const [op, v] of cases)
      expect(
        reasonOf(() => decodeResponse(cbor(v), op, LIMIT)),
        `${op} ${JSON.stringify(v)}`,
      ).toBe('malformed')
  })

  it('refuses a bad CID in a blocks reply: bad_cid', () => {
    const v0 = CID.createV0(Digest.create(0x12, sha256(b0.bytes)))
    const data = cbor({ blocks: [{ cid: v0, bytes: b0.bytes }], more: false })
    expect(reasonOf(() => decodeResponse(data, 'range', LIMIT))).toBe('bad_cid')
    expect(reasonOf(() => decodeResponse(data, 'get', LIMIT))).toBe('bad_cid')
  })

  it(`refuses more than ${MAX_HEADS_PER_RESPONSE} heads`, () => {
    const heads = Array.from({ length: MAX_HEADS_PER_RESPONSE + 1 }, (_, i) => ({ ...head, seq: i }))
    const data = encodeResponse({ heads, more: true })
    expect(reasonOf(() => decodeResponse(data, 'heads', LIMIT))).toBe('malformed')
    expect(refusal(() => decodeResponse(data, 'heads', LIMIT)).message).toMatch(/too many heads/)
    const ok = decodeResponse(encodeResponse({ heads: heads.slice(1), more: true }), 'heads', LIMIT)
    expect('heads' in ok && ok.heads).toHaveLength(MAX_HEADS_PER_RESPONSE)
  })

  it('refuses a reply over the byte limit, and garbage: oversized, malformed', () => {
    const data = encodeResponse({ blocks: [b0, b1], more: false })
    expect(reasonOf(() => decodeResponse(data, 'range', data.length - 1))).toBe('oversized')
    expect(decodeResponse(data, 'range', data.length)).toHaveProperty('blocks')
    expect(reasonOf(() => decodeResponse(Uint8Array.from([0xff, 0x00]), 'heads', LIMIT))).toBe('malformed')
  })

  it('keeps only string addresses, at most 32 per peer', () => {
    const addrs = [...Array.from({ length: 40 }, (_, i) => `/ip4/127.0.0.1/tcp/${i}`), 7, null]
    const res = decodeResponse(cbor({ peers: [{ peerId: 'p', addrs }] }), 'peers', LIMIT)
    expect('peers' in res && res.peers[0]!.addrs).toHaveLength(32)
  })
})
