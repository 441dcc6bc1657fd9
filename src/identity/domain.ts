import { InvalidDomainTagError } from './errors.js'

/**
 * The one signing rule of ICN: the bytes signed are
 * `UTF-8(tag) || 0x00 || message`.
 *
 * Tags are 1–128 characters of printable ASCII (0x21–0x7e), so a tag never
 * holds 0x00 and the signed bytes split back into exactly one (tag, message)
 * pair: a signature made under one tag can never verify under another.
 * Block tags all start `icn:block:v1:` and namespace tags `icn:ns:v1:`, so
 * the two families cannot collide either.
 */

/** Longest allowed domain tag, in characters (= bytes, tags being ASCII). */
export const MAX_DOMAIN_TAG_LENGTH = 128

const BLOCK_TAG_PREFIX = 'icn:block:v1:'
const NAMESPACE_TAG_PREFIX = 'icn:ns:v1:'

function checkPrintableAscii(value: string, what: string): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidDomainTagError(`${what} must be a non-empty string`)
  }
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) {
      throw new InvalidDomainTagError(
        `${what} may hold only printable ASCII without spaces (0x21-0x7e); found 0x${c.toString(16).padStart(2, '0')} at index ${i}`,
        { details: { value, index: i, charCode: c } },
      )
    }
  }
}

/** Throws InvalidDomainTagError unless `tag` is a valid domain tag. */
export function assertDomainTag(tag: string): void {
  checkPrintableAscii(tag, 'domain tag')
  if (tag.length > MAX_DOMAIN_TAG_LENGTH) {
    throw new InvalidDomainTagError(
      `domain tag is ${tag.length} characters, longer than the ${MAX_DOMAIN_TAG_LENGTH} allowed`,
      { details: { tag, length: tag.length } },
    )
  }
}

/** Whether `tag` is a valid domain tag. */
export function isDomainTag(tag: string): boolean {
  try {
    assertDomainTag(tag)
    return true
  } catch {
    return false
  }
}

/** The domain tag for signing a block of the given record type: `icn:block:v1:<recordType>`. */
export function blockTag(recordType: string): string {
  checkPrintableAscii(recordType, 'record type')
  const tag = BLOCK_TAG_PREFIX + recordType
  assertDomainTag(tag)
  return tag
}

/** The domain tag for signing within an application namespace: `icn:ns:v1:<ns>`. */
export function namespaceTag(ns: string): string {
  checkPrintableAscii(ns, 'namespace')
  const tag = NAMESPACE_TAG_PREFIX + ns
  assertDomainTag(tag)
  return tag
}

/** The bytes actually signed for `message` under `tag`: `UTF-8(tag) || 0x00 || message`. */
export function domainBytes(tag: string, message: Uint8Array): Uint8Array {
  assertDomainTag(tag)
  const out = new Uint8Array(tag.length + 1 + message.length)
  // Tags are ASCII, so each UTF-16 code unit is one byte of UTF-8.
  for (let i = 0; i < tag.length; i++) out[i] = tag.charCodeAt(i)
  out[tag.length] = 0x00
  out.set(message, tag.length + 1)
  return out
}

const MEMBER_TAG_PREFIX = 'icn:member:v1:'

/**
 * The domain tag for a record a member signs itself (a transfer, a hold, later a job or a vote):
 * `icn:member:v1:<kind>`. A third family beside block and namespace tags, so a member's signature on a record
 * can never pass for a block signature or for another kind of record.
 */
export function memberTag(kind: string): string {
  checkPrintableAscii(kind, 'record kind')
  const tag = MEMBER_TAG_PREFIX + kind
  assertDomainTag(tag)
  return tag
}
