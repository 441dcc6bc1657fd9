import { describe, expect, it } from 'vitest'
import {
  CoalescingVerifier,
  InlineVerifier,
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

describe('CoalescingVerifier', () => {
  it('sends the checks of one turn of the event loop as one batch, to the workers even when small', async () => {
    const fixture = new RecordingVerifierFixture()
    const v = new CoalescingVerifier(fixture)
    const good = [1, 2, 3].map((i) => check(new Uint8Array([i])))
    const bad: SignatureCheck = { ...check(new Uint8Array([4])), message: new Uint8Array([5]) }
    const results = await Promise.all([...good, bad].map((c) => v.check(c)))
    expect(results).toEqual(['verified', 'verified', 'verified', 'invalid'])
    expect(fixture.batches).toEqual([4])
    expect(fixture.options).toEqual([{ inlineBelow: 1 }])
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
    expect(fixture.batches).toEqual([2])
  })

  it('sends a batch at once when it reaches flushAt checks, the rest at the end of the turn', async () => {
    const fixture = new RecordingVerifierFixture()
    const v = new CoalescingVerifier(fixture, { flushAt: 3 })
    const checks = [1, 2, 3, 4, 5, 6, 7].map((i) => check(new Uint8Array([i])))
    const pending = checks.map((c) => v.check(c))
    expect(fixture.batches).toEqual([3, 3]) // sent while the turn went on
    expect(await Promise.all(pending)).toEqual(checks.map(() => 'verified'))
    expect(fixture.batches).toEqual([3, 3, 1])
  })
})
