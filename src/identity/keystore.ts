import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto'
import { type FileHandle, link, lstat, open, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { isDid } from './did.js'
import {
  IcnError,
  KeystoreCorruptError,
  KeystoreExistsError,
  KeystoreNotFoundError,
  PassphraseRequiredError,
  WrongPassphraseError,
} from './errors.js'
import { ED25519_SEED_LENGTH, Signer } from './keys.js'

/** scrypt cost parameters. */
export interface KdfParams {
  /** CPU/memory cost: a power of two between 2^10 and 2^22. */
  N: number
  /** Block size: 1 to 32. */
  r: number
  /** Parallelism: 1 to 16. */
  p: number
}

/** Options of `createKeystore`. */
export interface CreateKeystoreOptions {
  /** Overrides of the default scrypt parameters (tests use a small N). */
  kdf?: Partial<KdfParams>
  signal?: AbortSignal
}

/** Result of `checkKeystorePermissions`. */
export interface KeystorePermissions {
  /** True when neither group nor others have any access (mode 0600 or stricter). */
  ok: boolean
  /** The permission bits of the file (`mode & 0o777`). */
  mode: number
}

/** Default scrypt parameters: N = 2^15, r = 8, p = 1 (32 MiB, about 0.1 s). */
export const DEFAULT_KDF_PARAMS: Readonly<KdfParams> = Object.freeze({ N: 32768, r: 8, p: 1 })

const KEYSTORE_VERSION = 1
const KEYSTORE_TYPE = 'icn-keystore'
const KDF_NAME = 'scrypt'
const CIPHER_NAME = 'aes-256-gcm'
const KEY_LENGTH = 32
const SALT_LENGTH = 32
const MIN_SALT_LENGTH = 16
const MAX_SALT_LENGTH = 64
const IV_LENGTH = 12
const TAG_LENGTH = 16
const FILE_MODE = 0o600
/** A keystore is a few hundred bytes; refuse to parse anything much larger. */
const MAX_FILE_SIZE = 64 * 1024
const MIN_LOG2_N = 10
const MAX_LOG2_N = 22
const MAX_R = 32
const MAX_P = 16
/** Ceiling on the memory a keystore's scrypt parameters may demand. */
const MAX_SCRYPT_MEMORY = 1024 * 1024 * 1024
const MIN_SCRYPT_MAXMEM = 64 * 1024 * 1024

/**
 * Fewest characters (Unicode code points, after NFKC) a new keystore's passphrase may have. Checked when a
 * keystore is created, never when one is opened: an existing keystore keeps working with the passphrase it has.
 */
export const MIN_PASSPHRASE_LENGTH = 8

/** A new keystore's passphrase is shorter than MIN_PASSPHRASE_LENGTH characters. */
export class PassphraseTooShortError extends IcnError {
  static readonly code = 'PASSPHRASE_TOO_SHORT'
  declare readonly code: typeof PassphraseTooShortError.code
  override readonly name = 'PassphraseTooShortError'

  constructor(length: number) {
    super(
      PassphraseTooShortError.code,
      `a new keystore's passphrase must have at least ${MIN_PASSPHRASE_LENGTH} characters, this one has ${length}`,
      { details: { length, minimum: MIN_PASSPHRASE_LENGTH } },
    )
  }
}

/** Throws PassphraseTooShortError unless `passphrase` is long enough for a new keystore. */
export function checkNewPassphrase(passphrase: string): void {
  const length = [...passphrase.normalize('NFKC')].length
  if (length < MIN_PASSPHRASE_LENGTH) throw new PassphraseTooShortError(length)
}

/** The JSON layout of a version-1 keystore file. */
interface KeystoreJson {
  version: typeof KEYSTORE_VERSION
  type: typeof KEYSTORE_TYPE
  did: string
  kdf: { name: typeof KDF_NAME; N: number; r: number; p: number; salt: string; dkLen: typeof KEY_LENGTH }
  cipher: { name: typeof CIPHER_NAME; iv: string; tag: string }
  ciphertext: string
}

/** A parsed, validated keystore with its binary fields decoded. */
interface Keystore {
  did: string
  kdf: KdfParams
  salt: Buffer
  iv: Buffer
  tag: Buffer
  ciphertext: Buffer
}

function kdfParamsProblem(params: KdfParams): string | undefined {
  const { N, r, p } = params
  if (!Number.isSafeInteger(N) || N < 2 ** MIN_LOG2_N || N > 2 ** MAX_LOG2_N || (N & (N - 1)) !== 0) {
    return `kdf.N must be a power of two between 2^${MIN_LOG2_N} and 2^${MAX_LOG2_N}, got ${N}`
  }
  if (!Number.isSafeInteger(r) || r < 1 || r > MAX_R)
    return `kdf.r must be an integer from 1 to ${MAX_R}, got ${r}`
  if (!Number.isSafeInteger(p) || p < 1 || p > MAX_P)
    return `kdf.p must be an integer from 1 to ${MAX_P}, got ${p}`
  if (scryptMemory(params) > MAX_SCRYPT_MEMORY) {
    return `kdf parameters need ${Math.ceil(scryptMemory(params) / 2 ** 20)} MiB, more than the ${MAX_SCRYPT_MEMORY / 2 ** 20} MiB allowed`
  }
  return undefined
}

/** Bytes of memory OpenSSL's scrypt allocates for these parameters. */
function scryptMemory({ N, r, p }: KdfParams): number {
  return 128 * r * (N + 2) + 128 * r * p
}

/**
 * The AES key for `passphrase`. The passphrase is NFKC-normalised first so
 * that the same characters typed on different systems give the same key.
 */
function deriveKey(passphrase: string, salt: Buffer, params: KdfParams): Promise<Buffer> {
  const maxmem = Math.max(MIN_SCRYPT_MAXMEM, scryptMemory(params) + 2 ** 20)
  return new Promise((resolve, reject) => {
    scrypt(
      passphrase.normalize('NFKC'),
      salt,
      KEY_LENGTH,
      { N: params.N, r: params.r, p: params.p, maxmem },
      (err, key) => {
        if (err === null) resolve(key)
        else reject(err)
      },
    )
  })
}

function assertPassphrase(passphrase: string): void {
  if (typeof passphrase !== 'string' || passphrase.length === 0) {
    throw new PassphraseRequiredError('the keystore passphrase must not be empty')
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function errorCode(err: unknown): string | undefined {
  return isRecord(err) && typeof err.code === 'string' ? err.code : undefined
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/** Strict base64: canonical padding, no whitespace, and exactly `min`..`max` bytes. */
function decodeBase64(path: string, field: string, value: unknown, min: number, max: number = min): Buffer {
  const corrupt = (why: string): KeystoreCorruptError =>
    new KeystoreCorruptError(`keystore ${path}: ${field} ${why}`, { details: { path, field } })
  if (typeof value !== 'string') throw corrupt('is missing or not a string')
  if (value.length % 4 !== 0 || !BASE64.test(value)) throw corrupt('is not valid base64')
  const bytes = Buffer.from(value, 'base64')
  if (bytes.toString('base64') !== value) throw corrupt('is not canonical base64')
  if (bytes.length < min || bytes.length > max) {
    throw corrupt(
      min === max
        ? `must be ${min} bytes, got ${bytes.length}`
        : `must be ${min} to ${max} bytes, got ${bytes.length}`,
    )
  }
  return bytes
}

function parseKeystore(path: string, text: string): Keystore {
  const corrupt = (why: string, cause?: unknown): KeystoreCorruptError =>
    new KeystoreCorruptError(`keystore ${path}: ${why}`, { details: { path }, cause })
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw corrupt('is not valid JSON', err)
  }
  if (!isRecord(json)) throw corrupt('is not a JSON object')
  if (json.type !== KEYSTORE_TYPE) throw corrupt(`type must be '${KEYSTORE_TYPE}'`)
  if (json.version !== KEYSTORE_VERSION) {
    throw corrupt(`unsupported version ${JSON.stringify(json.version)}, expected ${KEYSTORE_VERSION}`)
  }
  if (typeof json.did !== 'string' || !isDid(json.did))
    throw corrupt('did is missing or not an Ed25519 did:key')
  const { kdf, cipher } = json
  if (!isRecord(kdf)) throw corrupt('kdf is missing')
  if (kdf.name !== KDF_NAME) throw corrupt(`kdf.name must be '${KDF_NAME}'`)
  if (kdf.dkLen !== KEY_LENGTH) throw corrupt(`kdf.dkLen must be ${KEY_LENGTH}`)
  const params = { N: kdf.N, r: kdf.r, p: kdf.p }
  if (typeof params.N !== 'number' || typeof params.r !== 'number' || typeof params.p !== 'number') {
    throw corrupt('kdf.N, kdf.r and kdf.p must be numbers')
  }
  const problem = kdfParamsProblem({ N: params.N, r: params.r, p: params.p })
  if (problem !== undefined) throw corrupt(problem)
  if (!isRecord(cipher)) throw corrupt('cipher is missing')
  if (cipher.name !== CIPHER_NAME) throw corrupt(`cipher.name must be '${CIPHER_NAME}'`)
  return {
    did: json.did,
    kdf: { N: params.N, r: params.r, p: params.p },
    salt: decodeBase64(path, 'kdf.salt', kdf.salt, MIN_SALT_LENGTH, MAX_SALT_LENGTH),
    iv: decodeBase64(path, 'cipher.iv', cipher.iv, IV_LENGTH),
    tag: decodeBase64(path, 'cipher.tag', cipher.tag, TAG_LENGTH),
    ciphertext: decodeBase64(path, 'ciphertext', json.ciphertext, ED25519_SEED_LENGTH),
  }
}

async function readKeystore(path: string): Promise<Keystore> {
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if (errorCode(err) === 'ENOENT') {
      throw new KeystoreNotFoundError(`no keystore at ${path}`, { details: { path }, cause: err })
    }
    throw err
  }
  try {
    const { size } = await handle.stat()
    if (size > MAX_FILE_SIZE) {
      throw new KeystoreCorruptError(`keystore ${path}: ${size} bytes is too large for a keystore`, {
        details: { path, size },
      })
    }
    return parseKeystore(path, await handle.readFile({ encoding: 'utf8' }))
  } finally {
    await handle.close()
  }
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path)
    return true
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false
    throw err
  }
}

/** fsync a directory so a rename or link in it is durable; a no-op where directories cannot be synced. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined
  try {
    handle = await open(dir, 'r')
    await handle.sync()
  } catch (err) {
    const code = errorCode(err)
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw err
  } finally {
    await handle?.close()
  }
}

/**
 * Moves `temp` to `path` unless `path` exists. A hard link fails atomically
 * with EEXIST if `path` appeared meanwhile; where links are unsupported, fall
 * back to check-then-rename.
 */
async function publish(temp: string, path: string): Promise<void> {
  try {
    await link(temp, path)
  } catch (err) {
    const code = errorCode(err)
    if (code === 'EEXIST') {
      throw new KeystoreExistsError(`a keystore already exists at ${path}; refusing to overwrite it`, {
        details: { path },
      })
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err
    if (await pathExists(path)) {
      throw new KeystoreExistsError(`a keystore already exists at ${path}; refusing to overwrite it`, {
        details: { path },
      })
    }
    await rename(temp, path)
  }
}

/**
 * Encrypts `signer`'s seed under `passphrase` and writes a new keystore at
 * `path` (mode 0600, atomically: temporary file, fsync, link into place,
 * fsync of the directory). Throws KeystoreExistsError if `path` exists: an
 * identity is never overwritten.
 */
export async function createKeystore(
  path: string,
  signer: Signer,
  passphrase: string,
  options: CreateKeystoreOptions = {},
): Promise<void> {
  options.signal?.throwIfAborted()
  assertPassphrase(passphrase)
  checkNewPassphrase(passphrase)
  const params: KdfParams = {
    N: options.kdf?.N ?? DEFAULT_KDF_PARAMS.N,
    r: options.kdf?.r ?? DEFAULT_KDF_PARAMS.r,
    p: options.kdf?.p ?? DEFAULT_KDF_PARAMS.p,
  }
  const problem = kdfParamsProblem(params)
  if (problem !== undefined) throw new RangeError(`createKeystore: ${problem}`)
  if (await pathExists(path)) {
    throw new KeystoreExistsError(`a keystore already exists at ${path}; refusing to overwrite it`, {
      details: { path },
    })
  }

  const salt = randomBytes(SALT_LENGTH)
  const iv = randomBytes(IV_LENGTH)
  const key = await deriveKey(passphrase, salt, params)
  const seed = signer.exportSeed()
  let ciphertext: Buffer
  let tag: Buffer
  try {
    const cipher = createCipheriv(CIPHER_NAME, key, iv, { authTagLength: TAG_LENGTH })
    cipher.setAAD(Buffer.from(signer.did, 'utf8'))
    ciphertext = Buffer.concat([cipher.update(seed), cipher.final()])
    tag = cipher.getAuthTag()
  } finally {
    key.fill(0)
    seed.fill(0)
  }
  const file: KeystoreJson = {
    version: KEYSTORE_VERSION,
    type: KEYSTORE_TYPE,
    did: signer.did,
    kdf: { name: KDF_NAME, ...params, salt: salt.toString('base64'), dkLen: KEY_LENGTH },
    cipher: { name: CIPHER_NAME, iv: iv.toString('base64'), tag: tag.toString('base64') },
    ciphertext: ciphertext.toString('base64'),
  }

  options.signal?.throwIfAborted()
  const dir = dirname(path)
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`)
  const handle = await open(temp, 'wx', FILE_MODE)
  try {
    try {
      await handle.chmod(FILE_MODE)
      await handle.writeFile(`${JSON.stringify(file, null, 2)}\n`, { encoding: 'utf8' })
      await handle.sync()
    } finally {
      await handle.close()
    }
    await publish(temp, path)
    await syncDirectory(dir)
  } finally {
    await unlink(temp).catch(() => undefined)
  }
}

/**
 * Decrypts the keystore at `path` with `passphrase`, using the scrypt
 * parameters recorded in the file. Throws KeystoreNotFoundError,
 * KeystoreCorruptError (not a valid keystore, or its key does not match its
 * DID) or WrongPassphraseError.
 */
export async function openKeystore(
  path: string,
  passphrase: string,
  options: { signal?: AbortSignal } = {},
): Promise<Signer> {
  options.signal?.throwIfAborted()
  assertPassphrase(passphrase)
  const store = await readKeystore(path)
  const key = await deriveKey(passphrase, store.salt, store.kdf)
  options.signal?.throwIfAborted()
  let seed: Buffer
  try {
    const decipher = createDecipheriv(CIPHER_NAME, key, store.iv, { authTagLength: TAG_LENGTH })
    decipher.setAuthTag(store.tag)
    decipher.setAAD(Buffer.from(store.did, 'utf8'))
    seed = Buffer.concat([decipher.update(store.ciphertext), decipher.final()])
  } catch (err) {
    throw new WrongPassphraseError(
      `cannot decrypt keystore ${path}: wrong passphrase (or the encrypted contents were altered)`,
      { details: { path, did: store.did }, cause: err },
    )
  } finally {
    key.fill(0)
  }
  try {
    const signer = Signer.fromSeed(seed)
    if (signer.did !== store.did) {
      throw new KeystoreCorruptError(
        `keystore ${path}: decrypted key belongs to ${signer.did}, not ${store.did}`,
        {
          details: { path, did: store.did, actual: signer.did },
        },
      )
    }
    return signer
  } finally {
    seed.fill(0)
  }
}

/** The DID recorded in the keystore at `path`; no passphrase needed. */
export async function readKeystoreDid(path: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  options.signal?.throwIfAborted()
  return (await readKeystore(path)).did
}

/**
 * Whether the keystore at `path` is private to its owner (no group or other
 * permission bits). A looser file still opens; callers should warn.
 */
export async function checkKeystorePermissions(path: string): Promise<KeystorePermissions> {
  try {
    const { mode } = await stat(path)
    return { ok: (mode & 0o077) === 0, mode: mode & 0o777 }
  } catch (err) {
    if (errorCode(err) === 'ENOENT') {
      throw new KeystoreNotFoundError(`no keystore at ${path}`, { details: { path }, cause: err })
    }
    throw err
  }
}
