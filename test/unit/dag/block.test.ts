import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { describe, expect, it } from 'vitest'
import {
  type Block,
  chainId,
  chainWriter,
  cidFor,
  collectLinks,
  createRawBlock,
  createSignedBlock,
  DAG_CBOR,
  MAX_BLOCK_BYTES,
  prevalidateBlock,
  RAW,
  type UnsignedBlock,
  VALUE_RECORD_TYPE,
  validateBlock,
} from '../../../src/dag/index.js'
import { blockTag, Signer } from '../../../src/identity/index.js'

const signer = Signer.generate()
const other = Signer.generate()
const chain = chainId(signer.did, 'main')

/** The fields of a valid genesis record, as a plain map. */
function fields(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    type: VALUE_RECORD_TYPE,
    chain,
    seq: 0,
    prev: null,
    author: signer.did,
    ts: 1_700_000_000_000,
    body: { inline: 'hello' },
    ...over,
  }
}

/** Sign any map (no shape checks), encode it, and address it correctly. */
function signed(
  unsigned: Record<string, unknown>,
  by: Signer = signer,
  tag = blockTag(VALUE_RECORD_TYPE),
): Block {
  const sig = by.signWithDomain(tag, dagCbor.encode(unsigned))
  return encoded({ ...unsigned, sig })
}

function encoded(record: unknown): Block {
  const bytes = dagCbor.encode(record)
  return { cid: cidFor(DAG_CBOR, bytes), bytes }
}

function codeOf(b: Block): string | undefined {
  try {
    validateBlock(b.cid, b.bytes)
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}

describe('validateBlock', () => {
  it('accepts a signed block and reports its links', () => {
    const b0 = createSignedBlock(signer, {
      type: VALUE_RECORD_TYPE,
      chain,
      seq: 0,
      prev: null,
      ts: 1,
      body: {},
    })
    const chunk = createRawBlock(new Uint8Array([1, 2, 3]))
    const b1 = createSignedBlock(signer, {
      type: VALUE_RECORD_TYPE,
      chain,
      seq: 1,
      prev: b0.cid,
      ts: 2,
      body: { chunked: { size: 3, parts: [chunk.cid] }, nested: [{ deep: { link: b0.cid } }] },
    })
    const v = validateBlock(b1.cid, b1.bytes)
    expect(v.kind).toBe('signed')
    if (v.kind !== 'signed') return
    expect(v.block).toMatchObject({ chain, seq: 1, author: signer.did, type: VALUE_RECORD_TYPE })
    // prev first, then the body's links in the decoded (canonical) key order
    expect(v.links.map(String)).toEqual([b0.cid, b0.cid, chunk.cid].map(String))
  })

  it('accepts a raw chunk of any content', () => {
    const chunk = createRawBlock(new Uint8Array(1000).fill(7))
    expect(validateBlock(chunk.cid, chunk.bytes)).toMatchObject({ kind: 'raw' })
    const empty = createRawBlock(new Uint8Array(0))
    expect(validateBlock(empty.cid, empty.bytes).kind).toBe('raw')
  })

  it('accepts a block of exactly the size limit and refuses one byte more', () => {
    const max = new Uint8Array(MAX_BLOCK_BYTES)
    expect(validateBlock(cidFor(RAW, max), max).kind).toBe('raw')
    const over = new Uint8Array(MAX_BLOCK_BYTES + 1)
    expect(codeOf({ cid: cidFor(RAW, over), bytes: over })).toBe('BLOCK_TOO_LARGE')
    expect(() => createRawBlock(over)).toThrow(expect.objectContaining({ code: 'BLOCK_TOO_LARGE' }))
  })

  it('refuses CIDs of another version, codec or hash: INVALID_CID', () => {
    const bytes = new Uint8Array([1, 2, 3])
    const sha = createHash('sha256').update(bytes).digest()
    expect(codeOf({ cid: CID.createV0(Digest.create(0x12, sha)), bytes })).toBe('INVALID_CID')
    expect(codeOf({ cid: CID.createV1(0x0129, Digest.create(0x12, sha)), bytes })).toBe('INVALID_CID')
    const sha512 = createHash('sha512').update(bytes).digest()
    expect(codeOf({ cid: CID.createV1(RAW, Digest.create(0x13, sha512)), bytes })).toBe('INVALID_CID')
  })

  it('refuses bytes that do not hash to the CID: CID_MISMATCH', () => {
    const a = createRawBlock(new Uint8Array([1]))
    expect(codeOf({ cid: a.cid, bytes: new Uint8Array([2]) })).toBe('CID_MISMATCH')
    // a valid record's bytes offered under another record's CID
    const good = signed(fields())
    expect(codeOf({ cid: good.cid, bytes: signed(fields({ ts: 2 })).bytes })).toBe('CID_MISMATCH')
  })

  it('refuses a record whose signature does not verify: INVALID_SIGNATURE', () => {
    const good = signed(fields())
    const record = dagCbor.decode(good.bytes) as Record<string, unknown>
    const sig = new Uint8Array(record.sig as Uint8Array)
    sig[0]! ^= 0x80
    expect(codeOf(encoded({ ...record, sig }))).toBe('INVALID_SIGNATURE')
    // signed by a key other than the author's
    expect(codeOf(signed(fields(), other))).toBe('INVALID_SIGNATURE')
    // signed under another record type's domain tag
    expect(codeOf(signed(fields(), signer, blockTag('icn.other/v1')))).toBe('INVALID_SIGNATURE')
    // body changed after signing
    expect(codeOf(encoded({ ...record, body: { inline: 'changed' } }))).toBe('INVALID_SIGNATURE')
  })

  it.each([
    ['not DAG-CBOR at all', () => ({ bytes: new Uint8Array([0xff, 0xff]) })],
    ['a list instead of a map', () => encoded([1, 2, 3])],
    [
      'a missing field',
      () => encoded((({ ts: _ts, ...rest }) => ({ ...rest, sig: new Uint8Array(64) }))(fields())),
    ],
    ['an extra field', () => signed(fields({ extra: 1 }))],
    ['another version', () => signed(fields({ v: 2 }))],
    ['a type without a version', () => signed(fields({ type: 'icn.value' }))],
    ['an author that is not a did:key', () => signed(fields({ author: 'did:web:example.org' }))],
    ['a chain of another DID', () => signed(fields({ chain: chainId(other.did, 'main') }))],
    ['a chain name with a space', () => signed(fields({ chain: `${signer.did}/a b` }))],
    ['a negative seq', () => signed(fields({ seq: -1 }))],
    ['a fractional seq', () => signed(fields({ seq: 1.5 }))],
    ['seq 0 with a prev', () => signed(fields({ prev: createRawBlock(new Uint8Array([1])).cid }))],
    ['seq 1 without a prev', () => signed(fields({ seq: 1 }))],
    [
      'a prev that is a raw CID',
      () => signed(fields({ seq: 1, prev: createRawBlock(new Uint8Array([1])).cid })),
    ],
    ['a negative ts', () => signed(fields({ ts: -5 }))],
    ['a short signature', () => encoded({ ...fields(), sig: new Uint8Array(63) })],
  ])('refuses %s: MALFORMED_BLOCK', (_what, make) => {
    const made = make() as Partial<Block> & { bytes: Uint8Array }
    const block = { cid: made.cid ?? cidFor(DAG_CBOR, made.bytes), bytes: made.bytes }
    expect(codeOf(block)).toBe('MALFORMED_BLOCK')
  })

  it('refuses non-canonical DAG-CBOR: MALFORMED_BLOCK', () => {
    const good = signed(fields())
    // `"v": 1` re-encoded with a one-byte-longer integer head (0x18 0x01)
    const at = Buffer.from(good.bytes).indexOf(Buffer.from([0x61, 0x76, 0x01]))
    const bytes = new Uint8Array([
      ...good.bytes.subarray(0, at + 2),
      0x18,
      0x01,
      ...good.bytes.subarray(at + 3),
    ])
    expect(codeOf({ cid: cidFor(DAG_CBOR, bytes), bytes })).toBe('MALFORMED_BLOCK')
  })
})

describe('block helpers', () => {
  it('chainId builds <DID>/<name> and refuses bad names; chainWriter reads the DID back', () => {
    expect(chainId(signer.did, 'jobs/2024-01')).toBe(`${signer.did}/jobs/2024-01`)
    expect(chainWriter(chainId(signer.did, 'a/b'))).toBe(signer.did)
    expect(chainWriter('no-slash')).toBe('')
    for (const bad of ['', 'with space', 'x'.repeat(129), 'é'])
      expect(() => chainId(signer.did, bad)).toThrow(expect.objectContaining({ code: 'MALFORMED_BLOCK' }))
  })

  it('createSignedBlock refuses the shapes validateBlock refuses', () => {
    expect(() =>
      createSignedBlock(signer, {
        type: VALUE_RECORD_TYPE,
        chain: chainId(other.did, 'x'),
        seq: 0,
        prev: null,
        ts: 1,
        body: 1,
      }),
    ).toThrow(expect.objectContaining({ code: 'MALFORMED_BLOCK' }))
    expect(() =>
      createSignedBlock(signer, { type: VALUE_RECORD_TYPE, chain, seq: 1, prev: null, ts: 1, body: 1 }),
    ).toThrow(expect.objectContaining({ code: 'MALFORMED_BLOCK' }))
    expect(() =>
      createSignedBlock(signer, {
        type: VALUE_RECORD_TYPE,
        chain,
        seq: 0,
        prev: null,
        ts: 1,
        body: new Uint8Array(MAX_BLOCK_BYTES),
      }),
    ).toThrow(expect.objectContaining({ code: 'BLOCK_TOO_LARGE' }))
  })

  it('collectLinks finds prev and every CID in the body, not inside byte strings', () => {
    const a = createRawBlock(new Uint8Array([1])).cid
    const b = createRawBlock(new Uint8Array([2])).cid
    const prev = signed(fields()).cid
    const record = {
      ...fields({ seq: 1, prev }),
      body: { list: [a, { b }], bytes: a.bytes, n: 1, s: 'x', none: null },
    }
    const links = collectLinks(record as unknown as UnsignedBlock)
    expect(links.map(String)).toEqual([prev, a, b].map(String))
  })
})

describe('blocks this process signed', () => {
  const bodies: unknown[] = [
    { inline: 'hello' },
    null,
    { ops: [{ op: 'release', hold: 'h' }], n: 2 ** 40, list: [1, -1, 'x', new Uint8Array(300)] },
    { big: 'é'.repeat(70_000) },
  ]

  it.each(bodies.map((body, i) => [i, body]))(
    'createSignedBlock encodes exactly what dagCbor.encode gives for the signed block (body %i)',
    (_i, body) => {
      for (const [seq, ts] of [
        [0, 0],
        [1, 23],
        [24, 1_700_000_000_000],
        [2 ** 32, Number.MAX_SAFE_INTEGER],
      ] as const) {
        const prev = seq === 0 ? null : signed(fields()).cid
        const b = createSignedBlock(signer, { type: VALUE_RECORD_TYPE, chain, seq, prev, ts, body })
        expect(Buffer.from(b.bytes).equals(Buffer.from(dagCbor.encode(b.block)))).toBe(true)
        expect(validateBlock(b.cid, Uint8Array.from(b.bytes)).kind).toBe('signed')
      }
    },
  )

  it('the store may skip the signature of those very bytes, unchanged; a copy or a changed array is verified', () => {
    const b = createSignedBlock(signer, {
      type: VALUE_RECORD_TYPE,
      chain,
      seq: 0,
      prev: null,
      ts: 5,
      body: { inline: 'mine' },
    })
    const own = prevalidateBlock(b.cid, b.bytes, { signedHere: true })
    expect(own.signedHere).toBe(true)
    expect(own.signature).toBeUndefined()
    // Only when asked (the store asks; validateBlock, CAR import and `icn dag verify` do not).
    expect(prevalidateBlock(b.cid, b.bytes).signature).toBeDefined()
    // The same bytes in another array, as from a peer: verified.
    expect(prevalidateBlock(b.cid, Uint8Array.from(b.bytes), { signedHere: true }).signature).toBeDefined()
    // The array changed after signing (and a CID made for what it holds now): verified, and refused.
    const record = dagCbor.decode(b.bytes) as Record<string, unknown>
    const changed = dagCbor.encode({ ...record, body: { inline: 'mind' } })
    expect(changed.length).toBe(b.bytes.length)
    b.bytes.set(changed)
    const cid = cidFor(DAG_CBOR, b.bytes)
    const p = prevalidateBlock(cid, b.bytes, { signedHere: true })
    expect(p.signedHere).toBeUndefined()
    expect(codeOf({ cid, bytes: b.bytes })).toBe('INVALID_SIGNATURE')
  })
})
