import { createHash } from 'node:crypto'
import { ED25519_PUBLIC_KEY_LENGTH, ED25519_SIGNATURE_LENGTH } from './keys.js'
import type { SignatureCheck } from './verifier.js'

/** Entries a SignatureCache keeps by default: a few seconds of a busy home node's transfers, about 4 MiB. */
export const SIGNATURE_CACHE_SIZE = 32_768

/**
 * Signatures this process has verified, remembered so that a second check of exactly the same public key, signed
 * bytes and signature in this process costs a hash instead of a verify. Verification is a pure function, so a
 * cached answer is the answer a fresh verify would give: the cache changes what a check costs, never its result.
 *
 * It holds valid signatures only (an invalid one is simply verified again, and fails again), keyed by
 * SHA-256(public key ‖ signature ‖ signed bytes): a record with the same body but another signature, or the same
 * signature over other bytes or under another key, is a miss and is verified. A check whose key or signature has
 * the wrong length is never a hit (so the concatenation is unambiguous) and never stored.
 *
 * What it is for: the home node checks a member's record when the API takes it, then folds the block that
 * holds it and checks it again there (the fold checks every member signature of every block, on every node).
 * The fold consults the cache the API filled, so the home node verifies each record once. It is per process and
 * never persisted or shared: another node, or this node after a restart or in a reindex, verifies everything.
 * Bounded: past `max` entries the oldest is dropped.
 */
export class SignatureCache {
  readonly max: number
  readonly #entries = new Set<string>()

  constructor(max = SIGNATURE_CACHE_SIZE) {
    this.max = Math.max(1, max)
  }

  /** Entries held. */
  get size(): number {
    return this.#entries.size
  }

  /** Whether this exact check (key, bytes, signature) was remembered as valid. */
  has(check: SignatureCheck): boolean {
    if (!wellFormed(check)) return false
    return this.#entries.has(keyOf(check))
  }

  /** Remember a check that verified. Call it only with a check a verifier answered `true` for. */
  add(check: SignatureCheck): void {
    if (!wellFormed(check)) return
    const key = keyOf(check)
    if (this.#entries.has(key)) return
    this.#entries.add(key)
    if (this.#entries.size > this.max) {
      const oldest = this.#entries.values().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
  }
}

function wellFormed(c: SignatureCheck): boolean {
  return c.publicKey.length === ED25519_PUBLIC_KEY_LENGTH && c.signature.length === ED25519_SIGNATURE_LENGTH
}

function keyOf(c: SignatureCheck): string {
  return createHash('sha256').update(c.publicKey).update(c.signature).update(c.message).digest('base64')
}
