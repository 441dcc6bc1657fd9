import { afterEach, describe, expect, it } from 'vitest'
import { type SignatureCheck, Signer, WorkerVerifier } from '../../../src/identity/index.js'

function checks(n: number): { list: SignatureCheck[]; expected: boolean[] } {
  const s = Signer.generate()
  const other = Signer.generate()
  const list: SignatureCheck[] = []
  const expected: boolean[] = []
  for (let i = 0; i < n; i++) {
    const message = new Uint8Array([i & 255, i >> 8, 7])
    const kind = i % 5
    const signature = s.sign(message)
    if (kind === 1) signature[0]! ^= 1 // tampered
    list.push({
      publicKey: kind === 2 ? other.publicKey : kind === 3 ? new Uint8Array(31) : s.publicKey,
      message,
      signature: kind === 4 ? signature.subarray(0, 63) : signature,
    })
    expected.push(kind === 0)
  }
  return { list, expected }
}

let verifier: WorkerVerifier | undefined
afterEach(async () => {
  await verifier?.close()
})

describe('WorkerVerifier', () => {
  it('gives the same answers as verifying inline, for good, tampered, wrong-key and malformed checks', async () => {
    verifier = new WorkerVerifier({ workers: 2, inlineBelow: 1, chunk: 16 })
    const { list, expected } = checks(200)
    expect(await verifier.verifyMany(list)).toEqual(expected)
    expect(await verifier.verifyMany(list.slice(0, 3))).toEqual(expected.slice(0, 3))
  })

  it('rejects pending checks with VERIFIER_UNAVAILABLE when closed, and verifies inline afterwards', async () => {
    verifier = new WorkerVerifier({ workers: 1, inlineBelow: 1 })
    const { list, expected } = checks(3000)
    const pending = verifier.verifyMany(list)
    await verifier.close()
    const outcome = await pending.then(
      (r) => r,
      (e: unknown) => e,
    )
    if (Array.isArray(outcome))
      expect(outcome).toEqual(expected) // it finished first: still right
    else expect(outcome).toMatchObject({ code: 'VERIFIER_UNAVAILABLE' })
    expect(await verifier.verifyMany(list.slice(0, 10))).toEqual(expected.slice(0, 10))
  })
})
