import * as dagCbor from '@ipld/dag-cbor'
import { type Static, Type } from 'typebox'
import { Compile } from 'typebox/compile'
import {
  domainBytes,
  isDid,
  memberTag,
  publicKeyFromDid,
  type SignatureCheck,
  type Signer,
  verifyEd25519,
} from '../identity/index.js'
import { MalformedRecordError, RecordSignatureError } from './errors.js'

/**
 * Records a member signs with its own key: the authorisation for every debit of its account. The home node
 * embeds them, signature and all, in its ledger blocks, so anyone holding the blocks can check that each debit
 * was the member's will.
 *
 * Signed bytes: `UTF-8("icn:member:v1:" + kind) || 0x00 || DAG-CBOR(record without sig)`.
 */

/** Record kinds the ledger takes now; jobs and votes add theirs. */
export const RECORD_KINDS = ['transfer', 'hold'] as const
export type RecordKind = (typeof RECORD_KINDS)[number]

/** Nonces: 8 to 64 of `A–Z a–z 0–9 _ -` (e.g. 16 random bytes in base64url). */
export const NONCE = '^[A-Za-z0-9_-]{8,64}$'
/** A hold's purpose: 1 to 128 characters, no control characters. */
export const MAX_PURPOSE_LENGTH = 128
/** Longest DID or account id in a record. */
const MAX_ID = 128
/**
 * Text without control characters (U+0000–U+001F, U+007F): every free string of a ledger record or op. Part of
 * the block rules, not only of input checks: PostgreSQL text cannot hold U+0000, so a fold that wrote one (a
 * refused op's member or reason, a hold's purpose) would fail there and succeed on SQLite. A block holding one
 * folds as SCHEMA_MISMATCH on every node.
 */
export const PLAIN_TEXT = '^[^\\x00-\\x1f\\x7f]+$'

/** A string of 1 to `max` characters, none of them a control character. */
export function plainText(max: number, description?: string) {
  return Type.String({
    minLength: 1,
    maxLength: max,
    pattern: PLAIN_TEXT,
    ...(description ? { description } : {}),
  })
}

const Amount = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'smallest units' })
const Did = plainText(MAX_ID)
const Common = {
  federation: plainText(128, 'federation id (genesis CID)'),
  member: Did,
  nonce: Type.String({ pattern: NONCE }),
  expires: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'ms since the epoch' }),
}
const Sig = Type.Refine(
  Type.Unsafe<Uint8Array>({}),
  (v) => v instanceof Uint8Array && v.length === 64,
  () => 'must be a 64-byte Ed25519 signature',
)

export const TransferFields = Type.Object(
  { kind: Type.Literal('transfer'), ...Common, to: Did, amount: Amount },
  { additionalProperties: false },
)
export const HoldFields = Type.Object(
  {
    kind: Type.Literal('hold'),
    ...Common,
    amount: Amount,
    purpose: plainText(MAX_PURPOSE_LENGTH),
  },
  { additionalProperties: false },
)
export type TransferFields = Static<typeof TransferFields>
export type HoldFields = Static<typeof HoldFields>
export type RecordFields = TransferFields | HoldFields

/** A signed record as it sits in a block (sig as bytes). */
export type SignedRecord<F extends RecordFields = RecordFields> = F & { sig: Uint8Array }

/** Block-form schemas (sig as bytes), used by the ledger's block body schema. */
export const SignedTransfer = Type.Object(
  { ...TransferFields.properties, sig: Sig },
  { additionalProperties: false },
)
export const SignedHold = Type.Object({ ...HoldFields.properties, sig: Sig }, { additionalProperties: false })

// Compiled on first use, not as the module loads: every node start loads this module, few check a record soon.
let checks: { transfer: ReturnType<typeof Compile>; hold: ReturnType<typeof Compile> } | undefined
const compiled = () => (checks ??= { transfer: Compile(SignedTransfer), hold: Compile(SignedHold) })

function fieldsOf<F extends RecordFields>(record: SignedRecord<F>): F {
  const { sig: _sig, ...fields } = record
  return fields as unknown as F
}

/** The bytes a member signs for `fields`. */
export function signedBytes(fields: RecordFields): Uint8Array {
  return dagCbor.encode(fields)
}

/** Sign `fields` with the member's signer (whose DID must be `fields.member`). */
export function signRecord<F extends RecordFields>(signer: Signer, fields: F): SignedRecord<F> {
  if (signer.did !== fields.member)
    throw new MalformedRecordError(`record names member ${fields.member} but is signed by ${signer.did}`)
  checkShape({ ...fields, sig: new Uint8Array(64) })
  return { ...fields, sig: signer.signWithDomain(memberTag(fields.kind), signedBytes(fields)) }
}

/** Check a record's shape (either kind); throws MalformedRecordError naming what is wrong. */
export function checkShape(record: unknown): asserts record is SignedRecord {
  const kind = (record as { kind?: unknown } | null)?.kind
  const check = kind === 'transfer' ? compiled().transfer : kind === 'hold' ? compiled().hold : undefined
  if (!check) throw new MalformedRecordError(`record kind must be one of ${RECORD_KINDS.join(', ')}`)
  if (!check.Check(record)) {
    const first = check.Errors(record)[0] as { instancePath?: string; message?: string } | undefined
    throw new MalformedRecordError(
      `malformed ${kind} record${first ? `: ${first.instancePath || '/'} ${first.message}` : ''}`,
      { details: first ? { path: first.instancePath, problem: first.message } : {} },
    )
  }
  const r = record as SignedRecord
  if (!isDid(r.member)) throw new MalformedRecordError(`record member ${r.member} is not an Ed25519 did:key`)
}

/** The Ed25519 check of a record: its member's key, the bytes it signed (domain tag included), its signature. */
export function recordSignatureCheck(record: SignedRecord): SignatureCheck {
  return {
    publicKey: publicKeyFromDid(record.member),
    message: domainBytes(memberTag(record.kind), signedBytes(fieldsOf(record))),
    signature: record.sig,
  }
}

/** Records `VerifiedRecords` keeps by default: a few seconds of a busy home node's transfers, a few MiB. */
export const VERIFIED_RECORDS_SIZE = 32_768

/**
 * Member records whose signature this process verified, remembered so that checking the same record again in
 * this process (the home node's fold of its own block, after its API checked the record) costs a lookup instead
 * of encoding the record and verifying. Verification is a pure function of the member's key, the signed bytes and
 * the signature; the key is named by the `member` field and the signed bytes are the canonical DAG-CBOR of the
 * fields, so a record with exactly the same fields and signature verifies exactly as the remembered one did: a hit
 * changes what the check costs, never its result.
 *
 * Kept by signature; a hit needs every field equal (the same field names; strings and integers compared with
 * `Object.is`): a forged record with the same body and another signature, or with the remembered signature and
 * another amount, nonce or anything else, misses and is verified (and refused). Holds valid records only, with
 * fields of strings and numbers only; per process, never persisted or shared: another node, or this one after a
 * restart or in `icn dag reindex`, verifies everything. Bounded: past `max` records the oldest is dropped.
 */
export class VerifiedRecords {
  readonly max: number
  readonly #entries = new Map<string, Readonly<Record<string, string | number>>>()

  constructor(max = VERIFIED_RECORDS_SIZE) {
    this.max = Math.max(1, max)
  }

  /** Records held. */
  get size(): number {
    return this.#entries.size
  }

  /** Forget every record (what is checked next is verified). */
  clear(): void {
    this.#entries.clear()
  }

  /** Remember a record whose signature verified. Call it only after a verify answered true for it. */
  add(record: SignedRecord): void {
    const key = sigKey(record)
    const fields = key === undefined ? undefined : snapshot(record)
    if (key === undefined || fields === undefined) return
    this.#entries.delete(key)
    this.#entries.set(key, fields)
    if (this.#entries.size > this.max) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
  }

  /** Whether a record with this signature and exactly these fields was remembered as verified. */
  has(record: SignedRecord): boolean {
    const key = sigKey(record)
    const known = key === undefined ? undefined : this.#entries.get(key)
    if (!known) return false
    const fields = record as unknown as Record<string, unknown>
    let n = 0
    for (const name of Object.keys(fields)) {
      if (name === 'sig') continue
      n++
      if (!Object.hasOwn(known, name) || !Object.is(known[name], fields[name])) return false
    }
    return n === Object.keys(known).length
  }
}

function sigKey(record: SignedRecord): string | undefined {
  const sig = record.sig
  if (!(sig instanceof Uint8Array) || sig.length !== 64) return undefined
  return Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).toString('latin1')
}

/** The record's fields but its signature, if all are strings or numbers (any other value is never remembered). */
function snapshot(record: SignedRecord): Record<string, string | number> | undefined {
  const out: Record<string, string | number> = {}
  const fields = record as unknown as Record<string, unknown>
  for (const name of Object.keys(fields)) {
    const value = fields[name]
    if (name === 'sig') continue
    if (typeof value !== 'string' && typeof value !== 'number') return undefined
    out[name] = value
  }
  return Object.freeze(out)
}

/**
 * Whether the record's signature verifies under its member's key and its kind's domain tag. With `verified`, a
 * record this process already verified (the same fields and signature) is answered from it: the same answer.
 */
export function signatureValid(record: SignedRecord, verified?: VerifiedRecords): boolean {
  return checkRecordSignature(record, verified) !== 'invalid'
}

/** `signatureValid`, telling whether the answer came from `verified` or from a verify. */
export function checkRecordSignature(
  record: SignedRecord,
  verified?: VerifiedRecords,
): 'verified' | 'cached' | 'invalid' {
  if (verified?.has(record)) return 'cached'
  const check = recordSignatureCheck(record)
  return verifyEd25519(check.publicKey, check.message, check.signature) ? 'verified' : 'invalid'
}

/** Shape and signature; throws MalformedRecordError or RecordSignatureError. */
export function verifyRecord(record: unknown): SignedRecord {
  checkShape(record)
  if (!signatureValid(record))
    throw new RecordSignatureError(
      `the ${record.kind} record's signature does not verify for ${record.member}`,
      {
        details: { member: record.member, nonce: record.nonce },
      },
    )
  return record
}

/** A signed record in its JSON form. */
export function recordToJson(record: SignedRecord): Record<string, unknown> {
  return { ...fieldsOf(record), sig: Buffer.from(record.sig).toString('base64url') }
}

/** A record from its JSON form (shape checked; signature not yet). */
export function recordFromJson(json: unknown): SignedRecord {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new MalformedRecordError('a record must be a JSON object')
  const j = json as Record<string, unknown>
  if (typeof j.sig !== 'string' || !/^[A-Za-z0-9_-]{86}$/.test(j.sig))
    throw new MalformedRecordError('record sig must be a 64-byte signature in base64url (86 characters)')
  const record = { ...j, sig: new Uint8Array(Buffer.from(j.sig, 'base64url')) }
  checkShape(record)
  return record
}
