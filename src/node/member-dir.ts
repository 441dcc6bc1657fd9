/**
 * Member folders: a member's identity (a did:key of a person or a cooperative, separate from any node's) kept on
 * disk as an encrypted keystore like a node's, plus `member.json`, which says that the folder holds a member and
 * what it knows about it. `icn member new` makes one; the devnet makes one per node. The CLI opens them with
 * `openMember` (src/cli/member.ts), which also finds the passphrase a devnet records for its members.
 */
import { mkdir, readFile, stat } from 'node:fs/promises'
import { isAbsolute, join, relative, resolve } from 'node:path'
import {
  checkNewPassphrase,
  createKeystore,
  IcnError,
  InvalidDidError,
  isDid,
  KeystoreExistsError,
  openKeystore,
  readKeystoreDid,
  Signer,
} from '../identity/index.js'
import { KEYSTORE_FILE, writeSecretFile } from './datadir.js'
import { InvalidOptionError } from './options.js'

/** The file that marks a member folder. */
export const MEMBER_FILE = 'member.json'

/** What `member.json` holds. Paths are relative to the member folder (or absolute). */
export interface MemberFile {
  version: 1
  /** The member's DID: the same as its keystore's. */
  did: string
  /** DID of its home node, if the folder knows it (a devnet member does). */
  home?: string
  /** Data folder of the home node on this machine, if known (a devnet member's is its node's). */
  homeDataDir?: string
  /**
   * A file holding the keystore passphrase, if the folder has one to hand (a devnet's members share the devnet's
   * passphrase file, as its nodes do): `openMember` then needs no prompt.
   */
  passphraseFile?: string
}

/** What is known about a member folder without its passphrase; paths absolute. */
export interface MemberDirInfo {
  did: string
  /** The member folder, absolute. */
  dir: string
  /** Its keystore file. */
  keystore: string
  home?: string
  homeDataDir?: string
  passphraseFile?: string
}

/** `icn member new` was given a folder that already holds a member (or another identity): nothing is changed. */
export class MemberExistsError extends IcnError {
  static readonly code = 'MEMBER_EXISTS'
  override readonly name = 'MemberExistsError'
  constructor(dir: string, what: string) {
    super(MemberExistsError.code, `${dir} already holds ${what}; choose an empty or new folder`, {
      details: { dir },
    })
  }
}

/** The folder holds no member (no `member.json`): create one with `icn member new --dir D`. */
export class MemberNotFoundError extends IcnError {
  static readonly code = 'MEMBER_NOT_FOUND'
  override readonly name = 'MemberNotFoundError'
  constructor(dir: string, message = `no member in ${dir}: create one with \`icn member new --dir ${dir}\``) {
    super(MemberNotFoundError.code, message, { details: { dir } })
  }
}

/** `member.json` is unreadable, not a version 1 member file, or names another DID than the keystore. */
export class InvalidMemberDirError extends IcnError {
  static readonly code = 'INVALID_MEMBER_DIR'
  override readonly name = 'InvalidMemberDirError'
  constructor(dir: string, problem: string) {
    super(InvalidMemberDirError.code, `${join(dir, MEMBER_FILE)}: ${problem}`, { details: { dir } })
  }
}

export interface CreateMemberOptions {
  /** DID of the member's home node, recorded in `member.json`. */
  home?: string
  /** The home node's data folder on this machine, recorded relative to the member folder. */
  homeDataDir?: string
  /** A file holding `passphrase`, recorded (relative to the member folder) so the folder opens without a prompt. */
  passphraseFile?: string
  /** scrypt cost of the keystore (the devnet uses the smallest, as for its nodes). */
  kdf?: { N?: number }
}

/**
 * Throws MemberExistsError if `dir` already holds a member or any keystore (a node's data folder, say),
 * InvalidOptionError if `dir` is a file, and InvalidDidError for a `home` that is not an Ed25519 did:key. Changes nothing: callers run it before asking for
 * a passphrase.
 */
export async function checkNewMemberDir(dir: string, opts: { home?: string } = {}): Promise<void> {
  if (opts.home !== undefined && !isDid(opts.home))
    throw new InvalidDidError(
      `the home node is not an Ed25519 did:key: ${JSON.stringify(String(opts.home).slice(0, 80))}`,
    )
  const abs = resolve(dir)
  const info = await stat(abs).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (info && !info.isDirectory())
    throw new InvalidOptionError(`${abs} exists and is not a folder; a member folder must be a folder`)
  if (await exists(join(abs, MEMBER_FILE))) throw new MemberExistsError(abs, 'a member')
  if (await exists(join(abs, KEYSTORE_FILE)))
    throw new MemberExistsError(abs, `an identity (${KEYSTORE_FILE})`)
}

/**
 * Make a member folder: a new Ed25519 identity in an encrypted keystore (`keystore.json`, mode 0600, never
 * overwritten), then `member.json`. The folder is created (mode 0700) if needed. Throws MemberExistsError if it
 * already holds a member or a keystore (also when another process creates one at the same time),
 * PassphraseTooShortError for a passphrase under 8 characters.
 */
export async function createMemberDir(
  dir: string,
  passphrase: string,
  opts: CreateMemberOptions = {},
): Promise<MemberDirInfo> {
  const abs = resolve(dir)
  await checkNewMemberDir(abs, opts)
  checkNewPassphrase(passphrase)
  await mkdir(abs, { recursive: true, mode: 0o700 })
  const signer = Signer.generate()
  const keystore = join(abs, KEYSTORE_FILE)
  try {
    await createKeystore(keystore, signer, passphrase, opts.kdf ? { kdf: opts.kdf } : undefined)
  } catch (err) {
    if (err instanceof KeystoreExistsError) throw new MemberExistsError(abs, `an identity (${KEYSTORE_FILE})`)
    throw err
  }
  const file: MemberFile = { version: 1, did: signer.did }
  if (opts.home !== undefined) file.home = opts.home
  if (opts.homeDataDir !== undefined) file.homeDataDir = relative(abs, resolve(opts.homeDataDir))
  if (opts.passphraseFile !== undefined) file.passphraseFile = relative(abs, resolve(opts.passphraseFile))
  await writeSecretFile(join(abs, MEMBER_FILE), `${JSON.stringify(file, null, 2)}\n`)
  return infoOf(abs, file)
}

/**
 * What `dir` says about its member, without the passphrase: DID, keystore path, and home, home data folder and
 * passphrase file if recorded (absolute). Throws MemberNotFoundError (no `member.json`), InvalidMemberDirError
 * (a bad `member.json`, or one whose DID is not the keystore's) or the keystore's own errors.
 */
export async function readMemberDir(dir: string): Promise<MemberDirInfo> {
  const abs = resolve(dir)
  let text: string
  try {
    text = await readFile(join(abs, MEMBER_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      throw new MemberNotFoundError(abs)
    throw new InvalidMemberDirError(abs, `cannot read it: ${(err as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new InvalidMemberDirError(abs, `not JSON (${(err as Error).message})`)
  }
  const f = json as Partial<MemberFile> | null
  if (typeof f !== 'object' || f === null || Array.isArray(f) || f.version !== 1)
    throw new InvalidMemberDirError(abs, 'not a version 1 member file')
  if (typeof f.did !== 'string' || !isDid(f.did)) throw new InvalidMemberDirError(abs, 'did is not a did:key')
  if (f.home !== undefined && (typeof f.home !== 'string' || !isDid(f.home)))
    throw new InvalidMemberDirError(abs, 'home is not a did:key')
  for (const key of ['homeDataDir', 'passphraseFile'] as const)
    if (f[key] !== undefined && (typeof f[key] !== 'string' || f[key] === ''))
      throw new InvalidMemberDirError(abs, `${key} is not a path`)
  const info = infoOf(abs, f as MemberFile)
  const keystoreDid = await readKeystoreDid(info.keystore)
  if (keystoreDid !== info.did)
    throw new InvalidMemberDirError(abs, `it names ${info.did}, but the keystore holds ${keystoreDid}`)
  return info
}

/** Unlock the member's key with `passphrase`. Throws like `readMemberDir`, and WrongPassphraseError. */
export async function unlockMemberDir(info: MemberDirInfo, passphrase: string): Promise<Signer> {
  const signer = await openKeystore(info.keystore, passphrase)
  if (signer.did !== info.did)
    throw new InvalidMemberDirError(info.dir, `it names ${info.did}, but the keystore holds ${signer.did}`)
  return signer
}

function infoOf(dir: string, f: MemberFile): MemberDirInfo {
  const at = (p: string): string => (isAbsolute(p) ? p : resolve(dir, p))
  return {
    did: f.did,
    dir,
    keystore: join(dir, KEYSTORE_FILE),
    ...(f.home !== undefined ? { home: f.home } : {}),
    ...(f.homeDataDir !== undefined ? { homeDataDir: at(f.homeDataDir) } : {}),
    ...(f.passphraseFile !== undefined ? { passphraseFile: at(f.passphraseFile) } : {}),
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return false
    throw err
  }
}
