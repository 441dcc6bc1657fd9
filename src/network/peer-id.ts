import { privateKeyFromRaw, publicKeyFromRaw } from '@libp2p/crypto/keys'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { didFromPublicKey, IcnError, publicKeyFromDid, type Signer } from '../identity/index.js'

/** A peer id that is not an Ed25519 identity key, so no DID corresponds to it. */
export class NotAnIcnPeerError extends IcnError {
  override readonly name = 'NotAnIcnPeerError'
  constructor(peer: string) {
    super('NOT_AN_ICN_PEER', `peer ${peer} has no Ed25519 identity key, so it is not an ICN node`)
  }
}

/** The libp2p private key of a node: the same Ed25519 key as its DID (libp2p's raw form is seed || public key). */
export function libp2pKeyFor(signer: Signer): PrivateKey {
  const seed = signer.exportSeed()
  try {
    const raw = new Uint8Array(64)
    raw.set(seed, 0)
    raw.set(signer.publicKey, 32)
    return privateKeyFromRaw(raw)
  } finally {
    seed.fill(0)
  }
}

/** The peer id of the node whose DID this is: a pure function, no look-up. Throws InvalidDidError. */
export function peerIdFromDid(did: string): PeerId {
  return peerIdFromPublicKey(publicKeyFromRaw(publicKeyFromDid(did)))
}

/** The DID of an ICN peer id (inverse of `peerIdFromDid`). Throws NotAnIcnPeerError for other key types. */
export function didFromPeerId(peer: PeerId | string): string {
  const id = typeof peer === 'string' ? peerIdFromString(peer) : peer
  if (id.type !== 'Ed25519' || !id.publicKey) throw new NotAnIcnPeerError(id.toString())
  return didFromPublicKey(id.publicKey.raw)
}

/** The peer id of a signer's node. */
export function peerIdForSigner(signer: Signer): PeerId {
  return peerIdFromPrivateKey(libp2pKeyFor(signer))
}
