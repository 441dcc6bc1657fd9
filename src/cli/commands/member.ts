import type { Command } from 'commander'
import type { MemberDirInfo } from '../../node/member-dir.js'
import { type GlobalOpts, output, passphraseFor } from '../common.js'

// The member folder helpers only (keystore, files): `icn member …` loads neither the node nor the network.
async function memberDir(): Promise<typeof import('../../node/member-dir.js')> {
  return import('../../node/member-dir.js')
}

/** What `new` and `show` print with --json. */
interface MemberSummary {
  did: string
  dir: string
  keystore: string
  home?: string
  homeDataDir?: string
  passphraseFile?: string
}

function summary(info: MemberDirInfo): MemberSummary {
  return { ...info }
}

function describe(s: MemberSummary): string {
  return [
    `DID       ${s.did}`,
    `folder    ${s.dir}`,
    `keystore  ${s.keystore}`,
    ...(s.home !== undefined ? [`home      ${s.home}${s.homeDataDir ? ` (${s.homeDataDir})` : ''}`] : []),
    ...(s.passphraseFile !== undefined ? [`passphrase file  ${s.passphraseFile}`] : []),
  ].join('\n')
}

export function registerMember(program: Command): void {
  const member = program
    .command('member')
    .description(
      "Member identities: a person's or a cooperative's did:key (not a node's), kept in its own folder; " +
        'commands that act as a member take --member DIR',
    )

  member
    .command('new')
    .description(
      'Create a member identity in a folder: a new did:key in an encrypted keystore (keystore.json, mode 0600) ' +
        'and member.json. The folder must not hold a member or any keystore yet',
    )
    .requiredOption('--dir <dir>', 'member folder to create (or an empty one)')
    .option('--home <did>', 'record the DID of the member’s home node in the folder')
    .option(
      '--passphrase-file <file>',
      'read the new keystore passphrase (8 characters at least) from this file (else ICN_PASSPHRASE or a prompt)',
    )
    .option('--json', 'print JSON: { did, dir, keystore, home? }')
    .action(async (opts: GlobalOpts & { dir: string; home?: string }) => {
      const { checkNewMemberDir, createMemberDir } = await memberDir()
      // Bad input is rejected before the passphrase is asked for, and nothing is written.
      await checkNewMemberDir(opts.dir, { home: opts.home })
      const passphrase = await passphraseFor(opts, true)
      const s = summary(await createMemberDir(opts.dir, passphrase, { home: opts.home }))
      output(opts, s, () => `Created member identity\n${describe(s)}\nUse it with: --member ${s.dir}`)
    })

  member
    .command('show')
    .description(
      "Show a member folder's DID, keystore and, if the folder knows it, home node (no passphrase)",
    )
    .requiredOption('--dir <dir>', 'member folder')
    .option('--json', 'print JSON: { did, dir, keystore, home? }')
    .action(async (opts: GlobalOpts & { dir: string }) => {
      const { readMemberDir } = await memberDir()
      const s = summary(await readMemberDir(opts.dir))
      output(opts, s, () => describe(s))
    })
}
