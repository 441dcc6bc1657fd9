import { varint } from 'multiformats'
import { base58btc } from 'multiformats/bases/base58'
import { InvalidDidError, InvalidKeyError } from './errors.js'

/** Multicodec code of an Ed25519 public key (`ed25519-pub`). */
export const ED25519_PUB_MULTICODEC = 0xed

const DID_KEY_PREFIX = 'did:key:'
const PUBLIC_KEY_LENGTH = 32
/** `did:key:` + 'z' + base58btc of 34 bytes is 56 characters; anything much longer is not ours. */
const MAX_DID_LENGTH = 128

const CODEC_PREFIX: Uint8Array = varint.encodeTo(ED25519_PUB_MULTICODEC, new Uint8Array(2))

/**
 * DIDs already parsed, with their keys (bounded: cleared when full). Every record names its member (and payee)
 * by DID and the ledger checks each of them, so without this each request decoded and re-encoded base58 a few
 * times. Only well-formed DIDs are kept; the answer for any DID is the same as a fresh parse.
 */
const parsedDids = new Map<string, Uint8Array>()
const PARSED_DIDS_MAX = 10_000

/** The `did:key` of an Ed25519 public key: `did:key:z6Mk…`. */
export function didFromPublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== PUBLIC_KEY_LENGTH) {
    throw new InvalidKeyError(
      `an Ed25519 public key is ${PUBLIC_KEY_LENGTH} bytes, got ${publicKey.length}`,
      {
        details: { length: publicKey.length },
      },
    )
  }
  const bytes = new Uint8Array(CODEC_PREFIX.length + PUBLIC_KEY_LENGTH)
  bytes.set(CODEC_PREFIX)
  bytes.set(publicKey, CODEC_PREFIX.length)
  return DID_KEY_PREFIX + base58btc.encode(bytes)
}

/**
 * The Ed25519 public key named by a `did:key`. Strict: exact `did:key:z`
 * prefix, canonical base58btc, multicodec `ed25519-pub` and a 32-byte key.
 */
export function publicKeyFromDid(did: string): Uint8Array {
  const known = typeof did === 'string' ? parsedDids.get(did) : undefined
  // A copy: the caller may keep or change what it gets.
  if (known) return known.slice()
  const key = parsePublicKey(did)
  if (parsedDids.size >= PARSED_DIDS_MAX) parsedDids.clear()
  parsedDids.set(did, key)
  return key.slice()
}

function parsePublicKey(did: string): Uint8Array {
  if (typeof did !== 'string') throw new InvalidDidError('a DID must be a string')
  if (did.length > MAX_DID_LENGTH) {
    throw new InvalidDidError(`DID is ${did.length} characters, longer than any Ed25519 did:key`, {
      details: { length: did.length },
    })
  }
  if (!did.startsWith(DID_KEY_PREFIX)) {
    throw new InvalidDidError(`not a did:key (must start with '${DID_KEY_PREFIX}'): ${JSON.stringify(did)}`, {
      details: { did },
    })
  }
  const multibase = did.slice(DID_KEY_PREFIX.length)
  if (!multibase.startsWith('z')) {
    throw new InvalidDidError(`did:key must use base58btc multibase (prefix 'z'): ${did}`, {
      details: { did },
    })
  }
  let bytes: Uint8Array
  try {
    bytes = base58btc.decode(multibase)
  } catch (err) {
    throw new InvalidDidError(`did:key is not valid base58btc: ${did}`, { details: { did }, cause: err })
  }
  if (base58btc.encode(bytes) !== multibase) {
    throw new InvalidDidError(`did:key is not canonical base58btc: ${did}`, { details: { did } })
  }
  if (bytes.length < CODEC_PREFIX.length) {
    throw new InvalidDidError(`did:key is too short to hold a multicodec prefix: ${did}`, {
      details: { did },
    })
  }
  let codec: number
  try {
    codec = varint.decode(bytes)[0]
  } catch (err) {
    throw new InvalidDidError(`did:key has no valid multicodec prefix: ${did}`, {
      details: { did },
      cause: err,
    })
  }
  if (codec !== ED25519_PUB_MULTICODEC || bytes[0] !== CODEC_PREFIX[0] || bytes[1] !== CODEC_PREFIX[1]) {
    throw new InvalidDidError(
      `did:key is not an Ed25519 key: multicodec 0x${codec.toString(16)}, expected 0x${ED25519_PUB_MULTICODEC.toString(16)} (ed25519-pub)`,
      { details: { did, multicodec: codec } },
    )
  }
  const keyLength = bytes.length - CODEC_PREFIX.length
  if (keyLength !== PUBLIC_KEY_LENGTH) {
    throw new InvalidDidError(
      `did:key holds a ${keyLength}-byte key, an Ed25519 key is ${PUBLIC_KEY_LENGTH} bytes`,
      {
        details: { did, length: keyLength },
      },
    )
  }
  return bytes.slice(CODEC_PREFIX.length)
}

/** Whether `value` is a well-formed Ed25519 `did:key`. */
export function isDid(value: unknown): value is string {
  if (typeof value !== 'string') return false
  if (parsedDids.has(value)) return true
  try {
    publicKeyFromDid(value)
    return true
  } catch {
    return false
  }
}
