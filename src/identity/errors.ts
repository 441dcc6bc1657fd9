/** Options shared by every ICN error. */
export interface IcnErrorOptions {
  /** Structured, loggable facts about the failure (never secrets). */
  details?: Readonly<Record<string, unknown>>
  /** The underlying error, if any. */
  cause?: unknown
}

/**
 * Base class of every ICN error: a stable `name` and `code` that callers and
 * tests match on, and optional structured `details`.
 */
export class IcnError extends Error {
  override readonly name: string = 'IcnError'
  readonly code: string
  readonly details?: Readonly<Record<string, unknown>>

  constructor(code: string, message: string, options: IcnErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    if (options.details !== undefined) this.details = options.details
  }
}

/** Thrown when a string is not a well-formed Ed25519 `did:key`. */
export class InvalidDidError extends IcnError {
  static readonly code = 'INVALID_DID'
  declare readonly code: typeof InvalidDidError.code
  override readonly name = 'InvalidDidError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(InvalidDidError.code, message, options)
  }
}

/** Thrown when a public key or seed is not 32 bytes or cannot be imported as Ed25519. */
export class InvalidKeyError extends IcnError {
  static readonly code = 'INVALID_KEY'
  declare readonly code: typeof InvalidKeyError.code
  override readonly name = 'InvalidKeyError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(InvalidKeyError.code, message, options)
  }
}

/** Thrown when signature bytes are malformed where a well-formed signature is required. */
export class InvalidSignatureFormatError extends IcnError {
  static readonly code = 'INVALID_SIGNATURE_FORMAT'
  declare readonly code: typeof InvalidSignatureFormatError.code
  override readonly name = 'InvalidSignatureFormatError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(InvalidSignatureFormatError.code, message, options)
  }
}

/**
 * Thrown when a keystore cannot be decrypted: the passphrase is wrong, or the
 * authenticated parts of the file (ciphertext, iv, tag, salt, did) were altered;
 * AES-GCM cannot tell these two apart.
 */
export class WrongPassphraseError extends IcnError {
  static readonly code = 'WRONG_PASSPHRASE'
  declare readonly code: typeof WrongPassphraseError.code
  override readonly name = 'WrongPassphraseError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(WrongPassphraseError.code, message, options)
  }
}

/** Thrown when the keystore file does not exist. */
export class KeystoreNotFoundError extends IcnError {
  static readonly code = 'KEYSTORE_NOT_FOUND'
  declare readonly code: typeof KeystoreNotFoundError.code
  override readonly name = 'KeystoreNotFoundError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(KeystoreNotFoundError.code, message, options)
  }
}

/** Thrown when the keystore file is not a valid version-1 ICN keystore, or its key does not match its DID. */
export class KeystoreCorruptError extends IcnError {
  static readonly code = 'KEYSTORE_CORRUPT'
  declare readonly code: typeof KeystoreCorruptError.code
  override readonly name = 'KeystoreCorruptError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(KeystoreCorruptError.code, message, options)
  }
}

/** Thrown when creating a keystore at a path that already exists (an identity is never overwritten). */
export class KeystoreExistsError extends IcnError {
  static readonly code = 'KEYSTORE_EXISTS'
  declare readonly code: typeof KeystoreExistsError.code
  override readonly name = 'KeystoreExistsError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(KeystoreExistsError.code, message, options)
  }
}

/** Thrown when no passphrase is available, entry was cancelled, or the passphrase given is empty. */
export class PassphraseRequiredError extends IcnError {
  static readonly code = 'PASSPHRASE_REQUIRED'
  declare readonly code: typeof PassphraseRequiredError.code
  override readonly name = 'PassphraseRequiredError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(PassphraseRequiredError.code, message, options)
  }
}

/** Thrown when the passphrase file cannot be read. */
export class PassphraseFileError extends IcnError {
  static readonly code = 'PASSPHRASE_FILE_UNREADABLE'
  declare readonly code: typeof PassphraseFileError.code
  override readonly name = 'PassphraseFileError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(PassphraseFileError.code, message, options)
  }
}

/** Thrown when the two passphrases typed at a confirming prompt differ. */
export class PassphraseMismatchError extends IcnError {
  static readonly code = 'PASSPHRASE_MISMATCH'
  declare readonly code: typeof PassphraseMismatchError.code
  override readonly name = 'PassphraseMismatchError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(PassphraseMismatchError.code, message, options)
  }
}

/** Thrown when a signing domain tag (or the record type / namespace it is built from) is not allowed. */
export class InvalidDomainTagError extends IcnError {
  static readonly code = 'INVALID_DOMAIN_TAG'
  declare readonly code: typeof InvalidDomainTagError.code
  override readonly name = 'InvalidDomainTagError'

  constructor(message: string, options?: IcnErrorOptions) {
    super(InvalidDomainTagError.code, message, options)
  }
}
