import { createPrivateKey, createPublicKey, type KeyObject, randomBytes, sign, verify } from 'node:crypto'
import { didFromPublicKey, publicKeyFromDid } from './did.js'
import { domainBytes } from './domain.js'
import { InvalidKeyError, InvalidSignatureFormatError } from './errors.js'

/** Length of an Ed25519 seed (the RFC 8032 secret key), in bytes. */
export const ED25519_SEED_LENGTH = 32
/** Length of an Ed25519 public key, in bytes. */
export const ED25519_PUBLIC_KEY_LENGTH = 32
/** Length of an Ed25519 signature, in bytes. */
export const ED25519_SIGNATURE_LENGTH = 64

/** PKCS#8 DER header of an Ed25519 private key; the 32-byte seed follows. */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
/** SPKI DER header of an Ed25519 public key; the 32-byte key follows. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** Imported public keys kept per cache; importing on every verify halves throughput. */
const KEY_CACHE_SIZE = 10_000

/** A Map-based least-recently-used cache. */
class LruCache<K, V> {
  readonly #max: number
  readonly #map = new Map<K, V>()

  constructor(max: number) {
    this.#max = max
  }

  get(key: K): V | undefined {
    const value = this.#map.get(key)
    if (value !== undefined) {
      this.#map.delete(key)
      this.#map.set(key, value)
    }
    return value
  }

  set(key: K, value: V): void {
    this.#map.delete(key)
    this.#map.set(key, value)
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next()
      if (oldest.done !== true) this.#map.delete(oldest.value)
    }
  }
}

const keysByBytes = new LruCache<string, KeyObject>(KEY_CACHE_SIZE)
const keysByDid = new LruCache<string, KeyObject>(KEY_CACHE_SIZE)

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function importPublicKey(publicKey: Uint8Array): KeyObject {
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH) {
    throw new InvalidKeyError(
      `an Ed25519 public key is ${ED25519_PUBLIC_KEY_LENGTH} bytes, got ${publicKey.length}`,
      { details: { length: publicKey.length } },
    )
  }
  try {
    return createPublicKey({
      key: Buffer.concat([SPKI_PREFIX, publicKey]),
      format: 'der',
      type: 'spki',
    })
  } catch (err) {
    throw new InvalidKeyError('cannot import Ed25519 public key', { cause: err })
  }
}

function cachedKey(publicKey: Uint8Array): KeyObject {
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH) return importPublicKey(publicKey)
  const id = toBuffer(publicKey).toString('base64')
  let key = keysByBytes.get(id)
  if (key === undefined) {
    key = importPublicKey(publicKey)
    keysByBytes.set(id, key)
  }
  return key
}

function cachedDidKey(did: string): KeyObject {
  let key = keysByDid.get(did)
  if (key === undefined) {
    key = importPublicKey(publicKeyFromDid(did))
    keysByDid.set(did, key)
  }
  return key
}

function verifyWithKey(key: KeyObject, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== ED25519_SIGNATURE_LENGTH) return false
  try {
    return verify(null, message, key, signature)
  } catch {
    return false
  }
}

/** Throws InvalidSignatureFormatError unless `signature` has the shape of an Ed25519 signature. */
export function assertSignatureFormat(signature: Uint8Array): void {
  if (!(signature instanceof Uint8Array) || signature.length !== ED25519_SIGNATURE_LENGTH) {
    const length = signature instanceof Uint8Array ? signature.length : undefined
    throw new InvalidSignatureFormatError(
      `an Ed25519 signature is ${ED25519_SIGNATURE_LENGTH} bytes, got ${length ?? 'a non-byte value'}`,
      { details: { length } },
    )
  }
}

/**
 * An Ed25519 private key, held as an opaque `node:crypto` KeyObject, with
 * its public key and `did:key`.
 */
export class Signer {
  /** The signer's `did:key`. */
  readonly did: string
  /** The signer's 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array
  readonly #privateKey: KeyObject

  private constructor(privateKey: KeyObject) {
    this.#privateKey = privateKey
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
    if (spki.length !== SPKI_PREFIX.length + ED25519_PUBLIC_KEY_LENGTH) {
      throw new InvalidKeyError(`unexpected Ed25519 SPKI length ${spki.length}`)
    }
    this.publicKey = Uint8Array.from(spki.subarray(SPKI_PREFIX.length))
    this.did = didFromPublicKey(this.publicKey)
  }

  /** A new signer with a fresh random key. */
  static generate(): Signer {
    const seed = randomBytes(ED25519_SEED_LENGTH)
    try {
      return Signer.fromSeed(seed)
    } finally {
      seed.fill(0)
    }
  }

  /** The signer for a 32-byte Ed25519 seed (the RFC 8032 secret key). */
  static fromSeed(seed: Uint8Array): Signer {
    if (!(seed instanceof Uint8Array) || seed.length !== ED25519_SEED_LENGTH) {
      throw new InvalidKeyError(`an Ed25519 seed is ${ED25519_SEED_LENGTH} bytes`, {
        details: { length: seed instanceof Uint8Array ? seed.length : undefined },
      })
    }
    const der = Buffer.concat([PKCS8_PREFIX, seed])
    try {
      return new Signer(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }))
    } catch (err) {
      if (err instanceof InvalidKeyError) throw err
      throw new InvalidKeyError('cannot import Ed25519 seed', { cause: err })
    } finally {
      der.fill(0)
    }
  }

  /** A copy of the 32-byte seed. Handle with care: it is the identity. */
  exportSeed(): Uint8Array {
    const der = this.#privateKey.export({ format: 'der', type: 'pkcs8' })
    try {
      return Uint8Array.from(der.subarray(der.length - ED25519_SEED_LENGTH))
    } finally {
      der.fill(0)
    }
  }

  /** The raw 64-byte Ed25519 signature of `message` exactly as given (no domain tag). */
  sign(message: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, message, this.#privateKey))
  }

  /** The signature of `UTF-8(tag) || 0x00 || message`; see `domainBytes`. */
  signWithDomain(tag: string, message: Uint8Array): Uint8Array {
    return this.sign(domainBytes(tag, message))
  }

  /** Keeps the key out of logs: only the DID is shown. */
  toJSON(): { did: string } {
    return { did: this.did }
  }
}

/**
 * Whether `signature` is a valid Ed25519 signature of `message` by
 * `publicKey` (strict RFC 8032, as OpenSSL checks it). A signature of the
 * wrong length is simply invalid; a key of the wrong length throws
 * InvalidKeyError.
 */
export function verifyEd25519(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return verifyWithKey(cachedKey(publicKey), message, signature)
}

/**
 * Whether `signature` is a valid Ed25519 signature of `message` by the key
 * named by `did`. Throws InvalidDidError if `did` is not an Ed25519 did:key.
 */
export function verifyDid(did: string, message: Uint8Array, signature: Uint8Array): boolean {
  return verifyWithKey(cachedDidKey(did), message, signature)
}

/** Signs `message` under domain `tag` (see `domainBytes`). */
export function signWithDomain(signer: Signer, tag: string, message: Uint8Array): Uint8Array {
  return signer.signWithDomain(tag, message)
}

/**
 * Whether `signature` was made under domain `tag` over `message` by the key
 * given as a `did:key` string or as raw public key bytes.
 */
export function verifyWithDomain(
  didOrPublicKey: string | Uint8Array,
  tag: string,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  const key = typeof didOrPublicKey === 'string' ? cachedDidKey(didOrPublicKey) : cachedKey(didOrPublicKey)
  return verifyWithKey(key, domainBytes(tag, message), signature)
}
