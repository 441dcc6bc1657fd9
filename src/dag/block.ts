import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import {
  blockTag,
  domainBytes,
  publicKeyFromDid,
  type SignatureCheck,
  type Signer,
  verifyEd25519,
} from '../identity/index.js'
import { CID, cidFor, DAG_CBOR, RAW, SHA2_256 } from './cid.js'
import {
  BlockTooLargeError,
  CidMismatchError,
  InvalidCidError,
  InvalidSignatureError,
  MalformedBlockError,
} from './errors.js'
import { checkCborLimits, checkValueLimits, MAX_BLOCK_DEPTH } from './limits.js'

/** Hard limit on one block's encoded bytes (signed record or chunk). */
export const MAX_BLOCK_BYTES = 2 * 1024 * 1024
/** Format version written in every signed block. */
export const BLOCK_VERSION = 1

/** The fields of a signed block, in the order they are documented (DAG-CBOR sorts keys itself). */
export interface UnsignedBlock {
  /** Format version, currently 1. */
  v: number
  /** Record type, e.g. `icn.value/v1`; part of the signature's domain tag. */
  type: string
  /** Chain id: `<author DID>/<name>`; only the author can write it. */
  chain: string
  /** Position in the chain, from 0. */
  seq: number
  /** CID of the block at `seq - 1`, null at seq 0. */
  prev: CID | null
  /** did:key of the signer. */
  author: string
  /** Author's clock, ms since the Unix epoch (informational). */
  ts: number
  /** The record's content: any IPLD data; CIDs in it are links. */
  body: unknown
}

export interface SignedBlock extends UnsignedBlock {
  /** Ed25519 signature over blockTag(type) || 0x00 || dagCbor(unsigned fields). */
  sig: Uint8Array
}

/** Bytes with their CID, as they travel and are stored. */
export interface Block {
  cid: CID
  bytes: Uint8Array
}

/** A block that passed every context-free check. */
export type ValidatedBlock =
  | { kind: 'signed'; cid: CID; bytes: Uint8Array; block: SignedBlock; links: CID[] }
  | { kind: 'raw'; cid: CID; bytes: Uint8Array }

const CHAIN_NAME = /^[A-Za-z0-9._~:/-]{1,128}$/
const RECORD_TYPE = /^[a-z0-9][a-z0-9._-]*\/v[0-9]+$/
const FIELDS = ['author', 'body', 'chain', 'prev', 'seq', 'sig', 'ts', 'type', 'v']

/** Chain id of the chain `name` written by `author`. */
export function chainId(author: string, name: string): string {
  if (!CHAIN_NAME.test(name)) throw new MalformedBlockError(`invalid chain name ${JSON.stringify(name)}`)
  return `${author}/${name}`
}

/** The writer of a chain: the DID before the first '/'. */
export function chainWriter(chain: string): string {
  const i = chain.indexOf('/')
  return i < 0 ? '' : chain.slice(0, i)
}

/** Encode and sign a record; returns the block's bytes and CID. */
export function createSignedBlock(
  signer: Signer,
  fields: Omit<UnsignedBlock, 'v' | 'author'>,
): Block & { block: SignedBlock } {
  const unsigned: UnsignedBlock = { v: BLOCK_VERSION, author: signer.did, ...fields }
  checkShape(unsigned)
  // The body sits at level 2 of the block: check it (without recursion) before the recursive encoder sees it.
  checkValueLimits(unsigned.body, MAX_BLOCK_DEPTH - 1, 'block body')
  const encoded = dagCbor.encode(unsigned)
  const sig = signer.signWithDomain(blockTag(unsigned.type), encoded)
  const block: SignedBlock = { ...unsigned, sig }
  const bytes = withSignature(encoded, block, sig)
  if (bytes.length > MAX_BLOCK_BYTES) throw new BlockTooLargeError(bytes.length, MAX_BLOCK_BYTES)
  const cid = cidFor(DAG_CBOR, bytes)
  signedHere.set(bytes, cid.multihash.digest)
  return { cid, bytes, block }
}

/**
 * The signed block's canonical encoding from the unsigned one, without encoding the record again: the inverse of
 * `signedMessageOf`. Canonical DAG-CBOR orders keys by length, then bytewise (v, ts, seq, sig, body, prev, type,
 * chain, author), so the signed map is the unsigned one with a 9-entry header and the sig entry inserted after
 * the v/ts/seq entries. (A test checks it against `dagCbor.encode` of the signed block.)
 */
function withSignature(unsigned: Uint8Array, block: UnsignedBlock, sig: Uint8Array): Uint8Array {
  const at = dagCbor.encode({ v: block.v, ts: block.ts, seq: block.seq }).length
  const out = new Uint8Array(unsigned.length + SIG_ENTRY_BYTES)
  out[0] = 0xa9
  out.set(unsigned.subarray(1, at), 1)
  out.set(SIG_ENTRY_HEAD, at)
  out.set(sig, at + SIG_ENTRY_HEAD.length)
  out.set(unsigned.subarray(at), at + SIG_ENTRY_BYTES)
  return out
}

/**
 * The bytes of every block this process signed (`createSignedBlock`) and their SHA-256, held while the bytes
 * live. The store's validation of such a block (the ledger's or the node's chain writer putting what it just
 * signed) skips the signature verify: the signature is this process's own over these very bytes, unchanged
 * (their digest is compared). Every other check still runs, and every other node verifies everything.
 */
const signedHere = new WeakMap<Uint8Array, Uint8Array>()

/** A raw chunk block. */
export function createRawBlock(bytes: Uint8Array): Block {
  if (bytes.length > MAX_BLOCK_BYTES) throw new BlockTooLargeError(bytes.length, MAX_BLOCK_BYTES)
  return { cid: cidFor(RAW, bytes), bytes }
}

/** A block that passed every check but its signature, with the signature check still to run. */
export interface PrevalidatedBlock {
  validated: ValidatedBlock
  /**
   * Present for signed blocks: the exact bytes the author signed (domain tag included). Absent for a block this
   * process signed itself when the caller allowed that (`signedHere`).
   */
  signature?: SignatureCheck
  /** A signed block whose signature this process made itself over these bytes (not verified again). */
  signedHere?: true
}

export interface PrevalidateOptions {
  /**
   * Skip the signature of a block whose bytes `createSignedBlock` produced in this process and that are unchanged
   * (the store, for what the node's chain writers put). Default false: everything is verified.
   */
  signedHere?: boolean
}

/**
 * Every check that needs no store: size, CID matches bytes, canonical DAG-CBOR, field shapes, chain owned by
 * the author, signature. Throws a typed error; the store adds the chain rules.
 */
export function validateBlock(cid: CID, bytes: Uint8Array): ValidatedBlock {
  const { validated, signature } = prevalidateBlock(cid, bytes)
  if (signature && !verifyEd25519(signature.publicKey, signature.message, signature.signature))
    throw signatureError(validated)
  return validated
}

/**
 * `validateBlock` without the signature verify, which the caller runs (in batches, possibly on worker threads)
 * and must not skip: the store calls this, then a SignatureVerifier, then `signatureError` for any failure.
 */
export function prevalidateBlock(
  cid: CID,
  bytes: Uint8Array,
  options: PrevalidateOptions = {},
): PrevalidatedBlock {
  if (bytes.length > MAX_BLOCK_BYTES) throw new BlockTooLargeError(bytes.length, MAX_BLOCK_BYTES)
  if (cid.version !== 1 || cid.multihash.code !== SHA2_256 || cid.multihash.size !== 32)
    throw new InvalidCidError(`unsupported CID ${cid}`)
  if (cid.code !== DAG_CBOR && cid.code !== RAW) throw new InvalidCidError(`unsupported codec in ${cid}`)
  const digest = createHash('sha256').update(bytes).digest()
  if (!digest.equals(cid.multihash.digest))
    throw new CidMismatchError(cid.toString(), cidFor(cid.code, bytes).toString())
  if (cid.code === RAW) return { validated: { kind: 'raw', cid, bytes } }

  // Depth, integer range and UTF-8 first, without recursion: the recursive decoder below then never goes deeper
  // than MAX_BLOCK_DEPTH, so the answer is the same on every node whatever its stack.
  checkCborLimits(bytes)
  let decoded: unknown
  try {
    decoded = dagCbor.decode(bytes)
  } catch (err) {
    throw new MalformedBlockError(`not valid DAG-CBOR: ${(err as Error).message}`)
  }
  const block = checkShape(decoded, true) as SignedBlock
  const links = collectLinks(block)
  if (options.signedHere === true) {
    const own = signedHere.get(bytes)
    if (own && Buffer.compare(own, digest) === 0)
      return { validated: { kind: 'signed', cid, bytes, block, links }, signedHere: true }
  }
  const signature: SignatureCheck = {
    publicKey: authorKey(block.author),
    message: signedMessageOf(bytes, block),
    signature: block.sig,
  }
  return { validated: { kind: 'signed', cid, bytes, block, links }, signature }
}

/** The error for a block whose signature did not verify. */
export function signatureError(b: ValidatedBlock): InvalidSignatureError {
  return new InvalidSignatureError(b.cid.toString(), b.kind === 'signed' ? b.block.author : '')
}

/** Bytes of the sig entry: `"sig"` as a CBOR text string (4), a 64-byte byte string's header (2), the 64 bytes. */
const SIG_ENTRY_BYTES = 4 + 2 + 64
/** The sig entry before its 64 bytes: text(3) "sig", bytes(64). */
const SIG_ENTRY_HEAD = Uint8Array.from([0x63, 0x73, 0x69, 0x67, 0x58, 0x40])

/**
 * The bytes the author signed (domain tag included), cut out of the block's own bytes instead of encoding the
 * record a second time. The block must first be canonical: its bytes are exactly the DAG-CBOR encoding of what
 * they decode to (so one record has one CID, whoever encoded it). Canonical DAG-CBOR orders map keys by length,
 * then bytewise: v, ts, seq, sig, body, prev, type, chain, author; so the bytes are the map header (9 entries),
 * the v/ts/seq entries, the sig entry, then the other five entries, and the signed encoding is the same without
 * the sig entry and with an 8-entry header.
 */
function signedMessageOf(bytes: Uint8Array, block: SignedBlock): Uint8Array {
  if (Buffer.compare(dagCbor.encode(block), bytes) !== 0)
    throw new MalformedBlockError('block is not canonical DAG-CBOR')
  // Canonical, so the sig entry sits right after the v/ts/seq entries, whose encoding gives its offset.
  const at = dagCbor.encode({ v: block.v, ts: block.ts, seq: block.seq }).length // 0xa3 + the three entries
  // domainBytes(blockTag(type), unsigned encoding), built in one buffer.
  const tag = tagBytes(block.type)
  const out = new Uint8Array(tag.length + bytes.length - SIG_ENTRY_BYTES)
  out.set(tag, 0)
  out[tag.length] = 0xa8
  out.set(bytes.subarray(1, at), tag.length + 1)
  out.set(bytes.subarray(at + SIG_ENTRY_BYTES), tag.length + at)
  return out
}

/** `UTF-8(blockTag(type)) || 0x00` per record type, built once. */
const tagCache = new Map<string, Uint8Array>()

function tagBytes(type: string): Uint8Array {
  let t = tagCache.get(type)
  if (!t) {
    t = domainBytes(blockTag(type), new Uint8Array(0))
    if (tagCache.size >= 1000) tagCache.clear()
    tagCache.set(type, t)
  }
  return t
}

/**
 * Decode a stored signed block without re-verifying (the store only holds validated blocks). The limits are still
 * checked first (one pass, no recursion), so bytes stored before they existed give a typed error, not a
 * RangeError.
 */
export function decodeSignedBlock(bytes: Uint8Array): SignedBlock {
  checkCborLimits(bytes)
  return dagCbor.decode(bytes) as SignedBlock
}

/** Every CID a signed block links: `prev` and any CID in the body, at any depth (walked without recursion). */
export function collectLinks(block: UnsignedBlock): CID[] {
  const out: CID[] = []
  if (block.prev) out.push(block.prev)
  const stack: unknown[] = [block.body]
  while (stack.length > 0) {
    const value = stack.pop()
    if (value === null || typeof value !== 'object' || value instanceof Uint8Array) continue
    const asCid = CID.asCID(value)
    if (asCid) out.push(asCid)
    else {
      // Children pushed in reverse, so links come out in document order.
      const children = Array.isArray(value) ? value : Object.values(value)
      for (let i = children.length - 1; i >= 0; i--) stack.push(children[i])
    }
  }
  return out
}

/** Public keys of DIDs already parsed (bounded), so each author is decoded once, not once per block. */
const authorKeys = new Map<string, Uint8Array>()

function authorKey(did: string): Uint8Array {
  let key = authorKeys.get(did)
  if (key) return key
  try {
    key = publicKeyFromDid(did)
  } catch {
    throw new MalformedBlockError(`author is not an Ed25519 did:key: ${did.slice(0, 80)}`)
  }
  if (authorKeys.size >= 10_000) authorKeys.clear()
  authorKeys.set(did, key)
  return key
}

function checkShape(value: unknown, withSig = false): UnsignedBlock {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new MalformedBlockError('block is not a map')
  const rec = value as Record<string, unknown>
  const keys = Object.keys(rec).sort()
  const expected = withSig ? FIELDS : FIELDS.filter((k) => k !== 'sig')
  if (keys.length !== expected.length || keys.some((k, i) => k !== expected[i]))
    throw new MalformedBlockError(
      `block fields must be exactly ${expected.join(', ')}; got ${keys.join(', ')}`,
    )
  if (rec.v !== BLOCK_VERSION) throw new MalformedBlockError(`unsupported block version ${String(rec.v)}`)
  if (typeof rec.type !== 'string' || !RECORD_TYPE.test(rec.type) || rec.type.length > 64)
    throw new MalformedBlockError('type must look like "name/v1"')
  if (typeof rec.author !== 'string') throw new MalformedBlockError('author must be a did:key string')
  authorKey(rec.author)
  if (typeof rec.chain !== 'string' || chainWriter(rec.chain) !== rec.author)
    throw new MalformedBlockError('chain must be "<author DID>/<name>"')
  if (!CHAIN_NAME.test(rec.chain.slice(rec.author.length + 1)))
    throw new MalformedBlockError('invalid chain name')
  if (typeof rec.seq !== 'number' || !Number.isSafeInteger(rec.seq) || rec.seq < 0)
    throw new MalformedBlockError('seq must be a non-negative integer')
  if (rec.seq === 0 && rec.prev !== null)
    throw new MalformedBlockError('block 0 of a chain must have prev null')
  if (rec.seq > 0 && CID.asCID(rec.prev) === null)
    throw new MalformedBlockError('prev must be a CID after block 0')
  if (rec.prev !== null && CID.asCID(rec.prev)?.code !== DAG_CBOR)
    throw new MalformedBlockError('prev must be a dag-cbor CID')
  if (typeof rec.ts !== 'number' || !Number.isSafeInteger(rec.ts) || rec.ts < 0)
    throw new MalformedBlockError('ts must be a non-negative integer (ms)')
  if (withSig && (!(rec.sig instanceof Uint8Array) || rec.sig.length !== 64))
    throw new MalformedBlockError('sig must be 64 bytes')
  return rec as unknown as UnsignedBlock
}
