import * as dagCbor from '@ipld/dag-cbor'
import { describe, expect, it } from 'vitest'
import { chainId, cidFor, createSignedBlock, DAG_CBOR, validateBlock } from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}

describe('one record, one encoding, one CID', () => {
  const signer = Signer.generate()
  const good = createSignedBlock(signer, {
    type: 'icn.value/v1',
    chain: chainId(signer.did, 'node'),
    seq: 0,
    prev: null,
    ts: 1_700_000_000_000,
    body: { inline: { sig: 'a string that looks like a key', n: [1, 2, 3] } },
  })

  it('accepts the canonical encoding', () => {
    expect(validateBlock(good.cid, good.bytes).kind).toBe('signed')
  })

  it('refuses the same record with its map entries in another order, even under its own CID', () => {
    // v entry (3 bytes: 0x61 'v' 0x01) swapped with the ts entry that follows it.
    const b = good.bytes
    const v = b.subarray(1, 4)
    const tsLen = dagCbor.encode({ ts: good.block.ts }).length - 1
    const ts = b.subarray(4, 4 + tsLen)
    const swapped = new Uint8Array(b.length)
    swapped.set([b[0]!], 0)
    swapped.set(ts, 1)
    swapped.set(v, 1 + ts.length)
    swapped.set(b.subarray(4 + tsLen), 1 + ts.length + v.length)
    expect(dagCbor.decode(swapped)).toEqual(dagCbor.decode(b)) // same record
    expect(codeOf(() => validateBlock(cidFor(DAG_CBOR, swapped), swapped))).toBe('MALFORMED_BLOCK')
  })

  it("refuses its author's own non-canonical encoding (map keys out of order), though validly signed", () => {
    const b = createSignedBlock(signer, {
      type: 'icn.value/v1',
      chain: chainId(signer.did, 'node'),
      seq: 1,
      prev: good.cid,
      ts: 1_700_000_000_001,
      body: { inline: { a: 1, b: 2 } },
    })
    // Swap the body's entries ("a": 1, "b": 2) and sign exactly the resulting bytes, as a dishonest author could.
    const canonicalPair = Uint8Array.of(0xa2, 0x61, 0x61, 0x01, 0x61, 0x62, 0x02)
    const swappedPair = Uint8Array.of(0xa2, 0x61, 0x62, 0x02, 0x61, 0x61, 0x01)
    const at = Buffer.from(b.bytes).indexOf(Buffer.from(canonicalPair))
    expect(at).toBeGreaterThan(0)
    const bytes = new Uint8Array(b.bytes)
    bytes.set(swappedPair, at)
    const head = dagCbor.encode({ v: 1, ts: b.block.ts, seq: 1 }).length
    const unsigned = new Uint8Array([0xa8, ...bytes.subarray(1, head), ...bytes.subarray(head + 70)])
    const sig = signer.signWithDomain('icn:block:v1:icn.value/v1', unsigned)
    bytes.set(sig, head + 6)
    expect(dagCbor.decode(bytes)).toMatchObject({ body: { inline: { a: 1, b: 2 } }, sig })
    expect(codeOf(() => validateBlock(cidFor(DAG_CBOR, bytes), bytes))).toBe('MALFORMED_BLOCK')
  })

  it('refuses a non-minimal integer encoding', () => {
    // seq 0 is encoded as 0x00; re-encode it as 0x18 0x00 (one-byte uint), which strict DAG-CBOR forbids.
    const b = good.bytes
    const at = dagCbor.encode({ v: 1, ts: good.block.ts }).length // header + v + ts entries, then "seq"
    expect(b.subarray(at, at + 5)).toEqual(Uint8Array.of(0x63, 0x73, 0x65, 0x71, 0x00))
    const bad = new Uint8Array(b.length + 1)
    bad.set(b.subarray(0, at + 4), 0)
    bad.set([0x18, 0x00], at + 4)
    bad.set(b.subarray(at + 5), at + 6)
    expect(codeOf(() => validateBlock(cidFor(DAG_CBOR, bad), bad))).toBe('MALFORMED_BLOCK')
  })

  it('refuses a block whose body was changed, under a CID recomputed for the new bytes', () => {
    const tampered = dagCbor.encode({ ...good.block, body: { inline: 'other' } })
    expect(codeOf(() => validateBlock(cidFor(DAG_CBOR, tampered), tampered))).toBe('INVALID_SIGNATURE')
  })

  it('refuses a signature made under another record type tag', () => {
    const { type: _t, v: _v, author: _a, sig: _s, ...fields } = good.block
    const other = createSignedBlock(signer, { ...fields, type: 'icn.other/v1' })
    const relabelled = dagCbor.encode({ ...other.block, type: 'icn.value/v1' })
    expect(codeOf(() => validateBlock(cidFor(DAG_CBOR, relabelled), relabelled))).toBe('INVALID_SIGNATURE')
  })
})
