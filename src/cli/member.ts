/**
 * Opening a member folder for a command that signs as the member (`--member DIR`): the one place that finds the
 * passphrase and unlocks the member's key. The folder functions themselves are in src/node/member-dir.ts.
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { resolvePassphrase, type Signer } from '../identity/index.js'
import { KEYSTORE_FILE } from '../node/datadir.js'
import {
  MEMBER_FILE,
  type MemberDirInfo,
  MemberNotFoundError,
  readMemberDir,
  unlockMemberDir,
} from '../node/member-dir.js'

/** An unlocked member: its DID, its signer and its folder (absolute), with what the folder knows of its home. */
export interface OpenedMember {
  did: string
  signer: Signer
  /** The member folder, absolute. */
  dir: string
  /** DID of its home node, if the folder records it (devnet members do). */
  home?: string
  /** Data folder of the home node on this machine, if recorded (devnet members: their node's). */
  homeDataDir?: string
}

/**
 * Open the member in `dir` and unlock its key. The passphrase comes from the first of: `opts.passphraseFile`
 * (`--passphrase-file`); the passphrase file the folder records (a devnet member's: the devnet's own passphrase
 * file, so it opens with no prompt, as devnet nodes do); `ICN_PASSPHRASE`; a prompt if stdin is a terminal. Throws
 * MemberNotFoundError (no member in `dir`; for a node's data folder, one that says so), InvalidMemberDirError,
 * PassphraseRequiredError, PassphraseFileError, WrongPassphraseError.
 */
export async function openMember(
  dir: string,
  opts: {
    passphraseFile?: string
    /** Where ICN_PASSPHRASE is read from; default process.env. */
    env?: NodeJS.ProcessEnv
    /** Whether a prompt may be shown when stdin is a terminal; default true. */
    interactive?: boolean
    signal?: AbortSignal
  } = {},
): Promise<OpenedMember> {
  const info = await readMemberDir(dir).catch((err: unknown) => {
    throw notAMemberFolder(dir, err)
  })
  const passphrase = await resolvePassphrase({
    passphraseFile: opts.passphraseFile ?? info.passphraseFile,
    env: opts.env ?? process.env,
    interactive: opts.interactive ?? true,
    prompt: `Passphrase of member ${info.did}: `,
    signal: opts.signal,
  })
  const signer = await unlockMemberDir(info, passphrase)
  return { did: info.did, signer, ...describeMember(info) }
}

/** The fields of a member folder that `openMember` returns besides the signer. */
function describeMember(info: MemberDirInfo): Omit<OpenedMember, 'did' | 'signer'> {
  return {
    dir: info.dir,
    ...(info.home !== undefined ? { home: info.home } : {}),
    ...(info.homeDataDir !== undefined ? { homeDataDir: info.homeDataDir } : {}),
  }
}

/**
 * A clearer MEMBER_NOT_FOUND for the usual mix-up, `--member` given a node's data folder (a keystore but no
 * member.json): `icn member new` would refuse that folder, so say what it is and where members live instead.
 */
function notAMemberFolder(dir: string, err: unknown): unknown {
  if (!(err instanceof MemberNotFoundError)) return err
  const abs = resolve(dir)
  if (!existsSync(join(abs, KEYSTORE_FILE)) || existsSync(join(abs, MEMBER_FILE))) return err
  return new MemberNotFoundError(
    abs,
    `${abs} holds a node's identity (${KEYSTORE_FILE}), not a member: --member takes a member folder ` +
      "(`icn member new --dir D` makes one; a devnet's are <devnet dir>/members/memberN, see `icn devnet status`)",
  )
}
