/**
 * Identity: Ed25519 keys through `node:crypto`, `did:key` identifiers, the
 * one domain-separated signing rule (`UTF-8(tag) || 0x00 || message`), the
 * encrypted keystore (scrypt + AES-256-GCM, mode 0600, atomic writes) and
 * passphrase resolution for the CLI and the node.
 */

export { didFromPublicKey, ED25519_PUB_MULTICODEC, isDid, publicKeyFromDid } from './did.js'
export {
  assertDomainTag,
  blockTag,
  domainBytes,
  isDomainTag,
  MAX_DOMAIN_TAG_LENGTH,
  memberTag,
  namespaceTag,
} from './domain.js'
export {
  IcnError,
  type IcnErrorOptions,
  InvalidDidError,
  InvalidDomainTagError,
  InvalidKeyError,
  InvalidSignatureFormatError,
  KeystoreCorruptError,
  KeystoreExistsError,
  KeystoreNotFoundError,
  PassphraseFileError,
  PassphraseMismatchError,
  PassphraseRequiredError,
  WrongPassphraseError,
} from './errors.js'
export {
  assertSignatureFormat,
  ED25519_PUBLIC_KEY_LENGTH,
  ED25519_SEED_LENGTH,
  ED25519_SIGNATURE_LENGTH,
  Signer,
  signWithDomain,
  verifyDid,
  verifyEd25519,
  verifyWithDomain,
} from './keys.js'
export {
  type CreateKeystoreOptions,
  checkKeystorePermissions,
  checkNewPassphrase,
  createKeystore,
  DEFAULT_KDF_PARAMS,
  type KdfParams,
  type KeystorePermissions,
  MIN_PASSPHRASE_LENGTH,
  openKeystore,
  PassphraseTooShortError,
  readKeystoreDid,
} from './keystore.js'
export { PASSPHRASE_ENV, type ResolvePassphraseOptions, resolvePassphrase } from './passphrase.js'
export {
  type CheckResult,
  CoalescingVerifier,
  type CoalescingVerifierOptions,
  InlineVerifier,
  type SignatureCheck,
  type SignatureVerifier,
  VerifierUnavailableError,
  type VerifyManyOptions,
  WorkerVerifier,
  type WorkerVerifierOptions,
} from './verifier.js'
