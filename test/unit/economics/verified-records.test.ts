import { describe, expect, it } from 'vitest'
import {
  checkRecordSignature,
  type SignedRecord,
  signRecord,
  type TransferFields,
  VerifiedRecords,
} from '../../../src/economics/index.js'
import { Signer } from '../../../src/identity/index.js'

const alice = Signer.generate()
const bob = Signer.generate()
let n = 0

function transfer(over: Partial<TransferFields> = {}): SignedRecord<TransferFields> {
  return signRecord(alice, {
    kind: 'transfer',
    federation: 'bafyfederation',
    member: alice.did,
    to: bob.did,
    amount: 5,
    nonce: `nonce-${String(++n).padStart(6, '0')}`,
    expires: 1_800_000_000_000,
    ...over,
  }) as SignedRecord<TransferFields>
}

describe('VerifiedRecords', () => {
  it('finds a remembered record by its signature and exact fields, in new objects too', () => {
    const v = new VerifiedRecords()
    const r = transfer()
    expect(v.has(r)).toBe(false)
    v.add(r)
    expect(v.has(r)).toBe(true)
    // As the fold sees it: a record decoded from the block, equal values in new objects.
    expect(v.has({ ...r, sig: Uint8Array.from(r.sig) })).toBe(true)
    expect(checkRecordSignature(r, v)).toBe('cached')
  })

  it('misses another signature on the same body, and the same signature on another body', () => {
    const v = new VerifiedRecords()
    const r = transfer()
    v.add(r)
    const flipped = Uint8Array.from(r.sig)
    flipped[5]! ^= 1
    const forgeries: SignedRecord[] = [
      { ...r, sig: flipped },
      { ...r, amount: 6 },
      { ...r, to: alice.did },
      { ...r, nonce: `${r.nonce}x` },
      { ...r, expires: r.expires + 1 },
      { ...r, federation: 'another' },
      { ...r, member: bob.did },
      { ...r, extra: 1 } as SignedRecord,
      (({ to: _to, ...rest }) => rest)(r) as unknown as SignedRecord,
      { ...r, amount: '5' } as unknown as SignedRecord,
    ]
    for (const f of forgeries) {
      expect(v.has(f)).toBe(false)
      // And verified afresh, they fail.
      expect(checkRecordSignature(f, v)).toBe('invalid')
    }
  })

  it('compares numbers exactly (Object.is): -0 is not 0', () => {
    const v = new VerifiedRecords()
    const r = transfer({ expires: 0 })
    v.add(r)
    expect(v.has({ ...r, expires: -0 })).toBe(false)
  })

  it('keeps what a record held when added: changing the record afterwards does not change what is remembered', () => {
    const v = new VerifiedRecords()
    const r = transfer()
    v.add(r)
    const copy = { ...r, sig: Uint8Array.from(r.sig) }
    r.amount = 1_000
    r.sig[0]! ^= 1
    expect(v.has(copy)).toBe(true)
    expect(v.has(r)).toBe(false)
  })

  it('never remembers a record with a field that is not a string or a number, or a signature of the wrong length', () => {
    const v = new VerifiedRecords()
    v.add({ ...transfer(), amount: { n: 5 } } as unknown as SignedRecord)
    v.add({ ...transfer(), sig: new Uint8Array(63) })
    expect(v.size).toBe(0)
  })

  it('is bounded: past its size the oldest records go', () => {
    const v = new VerifiedRecords(3)
    const records = [1, 2, 3, 4, 5].map(() => transfer())
    for (const r of records) v.add(r)
    expect(v.size).toBe(3)
    expect(records.map((r) => v.has(r))).toEqual([false, false, true, true, true])
  })

  it('forgets everything on clear()', () => {
    const v = new VerifiedRecords()
    const r = transfer()
    v.add(r)
    v.clear()
    expect(v.size).toBe(0)
    expect(v.has(r)).toBe(false)
  })
})
