import { describe, expect, it } from 'vitest'
import {
  blockTag,
  domainBytes,
  InvalidDomainTagError,
  isDomainTag,
  namespaceTag,
  Signer,
  signWithDomain,
  verifyEd25519,
  verifyWithDomain,
} from '../../../src/identity/index.js'

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

function expectTagError(fn: () => unknown): void {
  let thrown: unknown
  try {
    fn()
  } catch (err) {
    thrown = err
  }
  expect(thrown).toBeInstanceOf(InvalidDomainTagError)
  expect(thrown).toMatchObject({ code: 'INVALID_DOMAIN_TAG' })
}

describe('domain tags', () => {
  it('builds block and namespace tags', () => {
    expect(blockTag('JobAssigned')).toBe('icn:block:v1:JobAssigned')
    expect(namespaceTag('coop.example:votes')).toBe('icn:ns:v1:coop.example:votes')
  })

  it('lays out the signed bytes as tag || 0x00 || message', () => {
    expect(Array.from(domainBytes('ab', new Uint8Array([1, 2])))).toEqual([0x61, 0x62, 0x00, 1, 2])
    expect(Array.from(domainBytes('t', new Uint8Array(0)))).toEqual([0x74, 0x00])
  })

  it('rejects empty, non-printable, non-ASCII and over-long tags', () => {
    expectTagError(() => domainBytes('', new Uint8Array(0)))
    expectTagError(() => domainBytes('a\u0000b', new Uint8Array(0)))
    expectTagError(() => domainBytes('a b', new Uint8Array(0)))
    expectTagError(() => domainBytes('a\tb', new Uint8Array(0)))
    expectTagError(() => domainBytes('a\nb', new Uint8Array(0)))
    expectTagError(() => domainBytes('caf\u00e9', new Uint8Array(0)))
    expectTagError(() => domainBytes('a\u007f', new Uint8Array(0)))
    expectTagError(() => domainBytes('x'.repeat(129), new Uint8Array(0)))
    expect(isDomainTag('x'.repeat(128))).toBe(true)
    expect(isDomainTag('x'.repeat(129))).toBe(false)
  })

  it('rejects bad record types and namespaces', () => {
    expectTagError(() => blockTag(''))
    expectTagError(() => blockTag('Job Assigned'))
    expectTagError(() => blockTag('x'.repeat(200)))
    expectTagError(() => namespaceTag(''))
    expectTagError(() => namespaceTag('votes\n'))
    expectTagError(() => namespaceTag('\u0000'))
  })

  it('rejects a bad tag when signing and verifying', () => {
    const signer = Signer.generate()
    expectTagError(() => signer.signWithDomain('bad tag', new Uint8Array(0)))
    expectTagError(() => verifyWithDomain(signer.did, 'bad tag', new Uint8Array(0), new Uint8Array(64)))
  })
})

describe('domain-separated signatures', () => {
  const signer = Signer.generate()
  const message = utf8('{"amount":10}')

  it('verify under the tag they were made with, by DID or by public key', () => {
    const tag = blockTag('Transfer')
    const signature = signWithDomain(signer, tag, message)
    expect(signature).toEqual(signer.signWithDomain(tag, message))
    expect(verifyWithDomain(signer.did, tag, message, signature)).toBe(true)
    expect(verifyWithDomain(signer.publicKey, tag, message, signature)).toBe(true)
    expect(verifyEd25519(signer.publicKey, domainBytes(tag, message), signature)).toBe(true)
  })

  it('a namespace signature never verifies as a block signature, and vice versa', () => {
    const ns = namespaceTag('Transfer')
    const block = blockTag('Transfer')
    const nsSignature = signer.signWithDomain(ns, message)
    const blockSignature = signer.signWithDomain(block, message)
    expect(verifyWithDomain(signer.did, block, message, nsSignature)).toBe(false)
    expect(verifyWithDomain(signer.did, ns, message, blockSignature)).toBe(false)
  })

  it('a namespace cannot forge a block tag by embedding its prefix', () => {
    const forged = namespaceTag('x:icn:block:v1:Transfer')
    const signature = signer.signWithDomain(forged, message)
    expect(verifyWithDomain(signer.did, blockTag('Transfer'), message, signature)).toBe(false)
  })

  it('moving bytes between tag and message does not carry a signature over', () => {
    const signature = signer.signWithDomain(blockTag('Ab'), utf8('c'))
    expect(verifyWithDomain(signer.did, blockTag('A'), utf8('bc'), signature)).toBe(false)
    expect(verifyWithDomain(signer.did, blockTag('Abc'), new Uint8Array(0), signature)).toBe(false)
  })

  it('different record types do not verify for each other', () => {
    const signature = signer.signWithDomain(blockTag('JobBid'), message)
    expect(verifyWithDomain(signer.did, blockTag('JobAssigned'), message, signature)).toBe(false)
  })

  it('a raw signature over the message is not a domain signature', () => {
    const raw = signer.sign(message)
    expect(verifyWithDomain(signer.did, blockTag('Transfer'), message, raw)).toBe(false)
  })
})
