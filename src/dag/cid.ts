import { createHash } from 'node:crypto'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { InvalidCidError } from './errors.js'

export { CID } from 'multiformats/cid'

/** Multicodec codes the store accepts. */
export const DAG_CBOR = dagCbor.code // 0x71: signed records
export const RAW = 0x55 // chunks of large values
export const SHA2_256 = 0x12

/** CIDv1 (sha2-256) of the given bytes under the given codec. */
export function cidFor(codec: typeof DAG_CBOR | typeof RAW, bytes: Uint8Array): CID {
  const hash = createHash('sha256').update(bytes).digest()
  return CID.createV1(codec, Digest.create(SHA2_256, hash))
}

/** Parse a CID string (base32 `b…` or base58 `z…`/`Qm…` forms), requiring a codec and hash the store accepts. */
export function parseCid(text: string): CID {
  let cid: CID
  try {
    cid = CID.parse(text)
  } catch (err) {
    throw new InvalidCidError(`not a CID: ${JSON.stringify(text.slice(0, 100))}`, { cause: String(err) })
  }
  return checkCid(cid)
}

/** Check a decoded CID is v1, dag-cbor or raw, sha2-256. */
export function checkCid(cid: CID): CID {
  if (cid.version !== 1) throw new InvalidCidError(`CIDv${cid.version} is not accepted; use CIDv1`)
  if (cid.code !== DAG_CBOR && cid.code !== RAW)
    throw new InvalidCidError(`codec 0x${cid.code.toString(16)} is not accepted (dag-cbor or raw only)`)
  if (cid.multihash.code !== SHA2_256 || cid.multihash.size !== 32)
    throw new InvalidCidError(`hash 0x${cid.multihash.code.toString(16)} is not accepted (sha2-256 only)`)
  return cid
}

/** Decode CID bytes (as stored in the database). */
export function cidFromBytes(bytes: Uint8Array): CID {
  return CID.decode(bytes)
}
