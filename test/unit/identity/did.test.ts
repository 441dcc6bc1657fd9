import { base58btc } from 'multiformats/bases/base58'
import { describe, expect, it } from 'vitest'
import {
  didFromPublicKey,
  InvalidDidError,
  isDid,
  publicKeyFromDid,
  Signer,
} from '../../../src/identity/index.js'

/** Example from the did:key specification (W3C CCG), an Ed25519 key. */
const SPEC_EXAMPLE = 'did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp'
/** A secp256k1 did:key (multicodec 0xe7): valid did:key, wrong key type. */
const SECP256K1_DID = 'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme'

function didOf(bytes: number[]): string {
  return `did:key:${base58btc.encode(new Uint8Array(bytes))}`
}

function expectInvalid(did: string, pattern?: RegExp): void {
  let thrown: unknown
  try {
    publicKeyFromDid(did)
  } catch (err) {
    thrown = err
  }
  expect(thrown).toBeInstanceOf(InvalidDidError)
  expect(thrown).toMatchObject({ code: 'INVALID_DID', name: 'InvalidDidError' })
  if (pattern !== undefined) expect((thrown as Error).message).toMatch(pattern)
  expect(isDid(did)).toBe(false)
}

describe('did:key', () => {
  it('round-trips a public key', () => {
    const signer = Signer.generate()
    expect(signer.did).toMatch(/^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]+$/)
    expect(didFromPublicKey(signer.publicKey)).toBe(signer.did)
    expect(publicKeyFromDid(signer.did)).toEqual(signer.publicKey)
    expect(isDid(signer.did)).toBe(true)
  })

  it('decodes the spec example to a 32-byte key and re-encodes it identically', () => {
    const key = publicKeyFromDid(SPEC_EXAMPLE)
    expect(key).toHaveLength(32)
    expect(didFromPublicKey(key)).toBe(SPEC_EXAMPLE)
  })

  it('encodes the RFC 8032 TEST 1 key with the ed25519-pub prefix 0xed01', () => {
    const key = new Uint8Array(
      Buffer.from('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', 'hex'),
    )
    const did = didFromPublicKey(key)
    const bytes = base58btc.decode(did.slice('did:key:'.length))
    expect(Array.from(bytes.subarray(0, 2))).toEqual([0xed, 0x01])
    expect(bytes.subarray(2)).toEqual(key)
  })

  it('rejects a wrong prefix', () => {
    expectInvalid('did:web:example.com', /did:key/)
    expectInvalid(SPEC_EXAMPLE.replace('did:key:', 'DID:key:'))
    expectInvalid(` ${SPEC_EXAMPLE}`)
    expectInvalid(SPEC_EXAMPLE.replace('did:key:z', 'did:key:'), /base58btc/)
    expectInvalid(SPEC_EXAMPLE.replace('did:key:z', 'did:key:f'), /base58btc/)
    expectInvalid('')
  })

  it('rejects text that is not base58', () => {
    expectInvalid('did:key:z6Mk0OIl', /base58/)
    expectInvalid(`${SPEC_EXAMPLE}#fragment`)
    expectInvalid(`${SPEC_EXAMPLE} `)
  })

  it('rejects another multicodec (secp256k1)', () => {
    expectInvalid(SECP256K1_DID, /0xe7/)
  })

  it('rejects a key of the wrong length', () => {
    expectInvalid(didOf([0xed, 0x01, ...new Array<number>(31).fill(7)]), /31-byte/)
    expectInvalid(didOf([0xed, 0x01, ...new Array<number>(33).fill(7)]), /33-byte/)
    expectInvalid(didOf([0xed, 0x01]))
    expectInvalid('did:key:z')
  })

  it('rejects a very long string without decoding it', () => {
    expectInvalid(`did:key:z${'1'.repeat(10_000)}`, /longer/)
  })

  it('isDid is false for non-strings', () => {
    expect(isDid(42)).toBe(false)
    expect(isDid(undefined)).toBe(false)
  })

  it('didFromPublicKey rejects a key that is not 32 bytes', () => {
    expect(() => didFromPublicKey(new Uint8Array(33))).toThrow(
      expect.objectContaining({ code: 'INVALID_KEY' }),
    )
  })
})

describe('parsed DIDs are remembered', () => {
  it('gives each caller its own copy of the key: changing one changes no later answer', () => {
    const s = Signer.generate()
    const first = publicKeyFromDid(s.did)
    first.fill(0)
    expect(publicKeyFromDid(s.did)).toEqual(s.publicKey)
    expect(isDid(s.did)).toBe(true)
  })

  it('remembers only well-formed DIDs: a bad one is refused every time, before and after good ones', () => {
    const s = Signer.generate()
    const bad = `${s.did.slice(0, -1)}0` // '0' is not base58
    for (let i = 0; i < 2; i++) {
      expect(isDid(bad)).toBe(false)
      expect(() => publicKeyFromDid(bad)).toThrow(InvalidDidError)
      expect(isDid(s.did)).toBe(true)
    }
  })
})
