import { describe, expect, it } from 'vitest'
import {
  CoalescingVerifier,
  InlineVerifier,
  SignatureCache,
  type SignatureCheck,
  type SignatureVerifier,
  Signer,
  VerifierUnavailableError,
} from '../../../src/identity/index.js'

const signer = Signer.generate()
const other = Signer.generate()

function check(message: Uint8Array, by: Signer = signer): SignatureCheck {
  return { publicKey: by.publicKey, message, signature: by.sign(message) }
}

/** Test fixture: the inline verifier, recording each batch it was given (and failing if told to). */
class RecordingVerifierFixture implements SignatureVerifier {
  readonly batches: number[] = []
  readonly options: unknown[] = []
  failNext = false
  private readonly inline = new InlineVerifier()
  async verifyMany(checks: SignatureCheck[], options?: unknown): Promise<boolean[]> {
    this.batches.push(checks.length)
    this.options.push(options)
    if (this.failNext) {
      this.failNext = false
      throw new VerifierUnavailableError('test: the workers are gone')
    }
    return this.inline.verifyMany(checks)
  }
  async close(): Promise<void> {}
}

describe('SignatureCache', () => {
  it('finds exactly the checks added: the same key, bytes and signature', () => {
    const cache = new SignatureCache()
    const c = check(new Uint8Array([1, 2, 3]))
    expect(cache.has(c)).toBe(false)
    cache.add(c)
    expect(cache.has(c)).toBe(true)
    // The same values in new arrays: the key is the content, not the objects.
    expect(
      cache.has({
        publicKey: Uint8Array.from(c.publicKey),
        message: Uint8Array.from(c.message),
        signature: Uint8Array.from(c.signature),
      }),
    ).toBe(true)
  })

  it('misses another signature over the same bytes, the same signature over other bytes, and another key', () => {
    const cache = new SignatureCache()
    const c = check(new Uint8Array([1, 2, 3]))
    cache.add(c)
    const forged = Uint8Array.from(c.signature)
    forged[10]! ^= 1
    expect(cache.has({ ...c, signature: forged })).toBe(false)
    expect(cache.has({ ...c, signature: other.sign(c.message) })).toBe(false)
    expect(cache.has({ ...c, message: new Uint8Array([1, 2, 4]) })).toBe(false)
    expect(cache.has({ ...c, publicKey: other.publicKey })).toBe(false)
  })

  it('never holds or finds a check whose key or signature has the wrong length', () => {
    const cache = new SignatureCache()
    const c = check(new Uint8Array([9]))
    // Shifting one byte from the key into the signature keeps the concatenation; it must still miss.
    const shifted: SignatureCheck = {
      publicKey: c.publicKey.subarray(0, 31),
      message: c.message,
      signature: Uint8Array.from([c.publicKey[31]!, ...c.signature]),
    }
    cache.add(c)
    expect(cache.has(shifted)).toBe(false)
    cache.add(shifted)
    expect(cache.size).toBe(1)
  })

  it('is bounded: past its size the oldest entries go', () => {
    const cache = new SignatureCache(3)
    const checks = [1, 2, 3, 4, 5].map((i) => check(new Uint8Array([i])))
    for (const c of checks) cache.add(c)
    expect(cache.size).toBe(3)
    expect(checks.map((c) => cache.has(c))).toEqual([false, false, true, true, true])
    cache.add(checks[4]!) // already held: nothing moves
    expect(cache.size).toBe(3)
  })
})

describe('CoalescingVerifier', () => {
  it('sends the checks of one turn of the event loop as one batch, and remembers the valid ones', async () => {
    const fixture = new RecordingVerifierFixture()
    const cache = new SignatureCache()
    const v = new CoalescingVerifier(fixture, { cache })
    const good = [1, 2, 3].map((i) => check(new Uint8Array([i])))
    const bad: SignatureCheck = { ...check(new Uint8Array([4])), message: new Uint8Array([5]) }
    const results = await Promise.all([...good, bad].map((c) => v.check(c)))
    expect(results).toEqual(['verified', 'verified', 'verified', 'invalid'])
    expect(fixture.batches).toEqual([4])
    expect(fixture.options).toEqual([{ inlineBelow: 1 }])
    expect(good.map((c) => cache.has(c))).toEqual([true, true, true])
    expect(cache.has(bad)).toBe(false)
    // A later turn is a batch of its own.
    expect(await v.check(check(new Uint8Array([6])))).toBe('verified')
    expect(fixture.batches).toEqual([4, 1])
  })

  it('verifies on this thread when the workers fail: the same answers, no error', async () => {
    const fixture = new RecordingVerifierFixture()
    const v = new CoalescingVerifier(fixture)
    fixture.failNext = true
    const good = check(new Uint8Array([7]))
    const bad = { ...good, signature: other.sign(good.message) }
    expect(await Promise.all([v.check(good), v.check(bad)])).toEqual(['verified', 'invalid'])
  })
})
