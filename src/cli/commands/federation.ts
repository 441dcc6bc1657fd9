import { resolve } from 'node:path'
import type { Command } from 'commander'
import type { Federation } from '../../federation/index.js'
import { defaultOptions } from '../../node/options.js'
import { CliError, EXIT, type GlobalOpts, output, passphraseFor } from '../common.js'

// The federation module (CAR codec, block checks) is loaded inside the actions, so `icn --help` stays quick.
async function federation(): Promise<typeof import('../../federation/index.js')> {
  return import('../../federation/index.js')
}

/** Collects a repeatable option's values. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]

/** What `create` and `show` print with --json: the federation without the genesis bytes. */
interface FederationSummary {
  id: string
  name: string
  founder: string
  members: string[]
  nodes: string[]
  /** Member DID → home node DID, for every member. */
  homes: Record<string, string>
  parameters: Record<string, number>
  file: string
}

async function summary(f: Federation, file: string): Promise<FederationSummary> {
  return { ...(await federation()).federationSummary(f), file }
}

function describeFederation(s: FederationSummary, verb: string): string {
  const width = Math.max(...Object.keys(s.parameters).map((k) => k.length))
  return [
    `federation ${s.id}`,
    `  name        ${s.name}`,
    `  founder     ${s.founder}`,
    `  members     ${s.members.length} (each with its home node)`,
    ...s.members.map((m) => `    ${m}  home ${s.homes[m] ?? '?'}`),
    `  nodes       ${s.nodes.length}`,
    ...s.nodes.map((n) => `    ${n}`),
    '  parameters',
    ...Object.entries(s.parameters).map(([k, v]) => `    ${k.padEnd(width)}  ${v}`),
    `${verb} ${s.file}`,
  ].join('\n')
}

/**
 * The founding members and their homes from repeated `--member DID[@NODE_DID]`: without `@NODE_DID` the genesis
 * default applies (the first node in sorted order). A malformed value is a usage error (exit 2); whether the DIDs
 * are valid and the home is one of the nodes is left to `checkGenesisInput`, which says which one is wrong.
 */
export function parseMembers(items: string[]): { members: string[]; homes: Record<string, string> } {
  const members: string[] = []
  const homes: Record<string, string> = {}
  for (const item of items) {
    const at = item.indexOf('@')
    const member = (at < 0 ? item : item.slice(0, at)).trim()
    const home = at < 0 ? undefined : item.slice(at + 1).trim()
    if (member === '' || home === '' || home?.includes('@'))
      throw new CliError(
        `--member must be DID or DID@NODE_DID (the member's home node), got ${JSON.stringify(item.slice(0, 200))}`,
        EXIT.usage,
      )
    members.push(member)
    if (home !== undefined) homes[member] = home
  }
  return { members, homes }
}

/** Genesis file errors a user fixes by changing the command line: exit 2, keeping the error's code. */
function asUsage(err: unknown): never {
  const e = err as { code?: string; message?: string }
  if (e.code === 'GENESIS_EXISTS' || e.code === 'GENESIS_NOT_FOUND')
    throw new CliError(e.message ?? String(err), EXIT.usage, e.code)
  throw err
}

export function registerFederation(program: Command): void {
  const fed = program
    .command('federation')
    .description('Federations: create a signed genesis, show one, list the network parameters')

  fed
    .command('create')
    .description(
      "Sign a federation genesis with the data folder's identity (the founder, always one of the nodes) and write it as a CAR file",
    )
    .requiredOption('--name <name>', 'federation name: 1-64 of A-Z a-z 0-9 space . _ -')
    .requiredOption('--out <file>', 'genesis CAR file to write')
    .option(
      '--member <did[@node]>',
      'a founding member, optionally with its home node, which must be the founder or a --node (repeat for ' +
        'more; default: the founder, homed at itself; a member without @node is homed at the first node in ' +
        'sorted order)',
      collect,
    )
    .option('--node <did>', 'a node allowed to join, besides the founder (repeat for more)', collect)
    .option(
      '--param <key=value>',
      'set a parameter (repeat for more; see `icn federation params`)',
      collect,
      [],
    )
    .option('--force', 'replace --out if it exists')
    .option('--data-dir <dir>', 'data folder of the founder', defaultOptions.dataDir)
    .option('--passphrase-file <file>', 'keystore passphrase file (else ICN_PASSPHRASE or a prompt)')
    .option('--json', 'print JSON')
    .action(
      async (
        opts: GlobalOpts & {
          name: string
          out: string
          member?: string[]
          node?: string[]
          param?: string[]
          force?: boolean
          dataDir: string
        },
      ) => {
        const { checkGenesisInput, createGenesis, parseParameterAssignments, writeGenesisFile } =
          await federation()
        const { readDid, unlockIdentity } = await import('../../node/datadir.js')
        const file = resolve(opts.out)
        // Everything is checked before the passphrase is asked for: bad input never unlocks the key.
        const parameters = parseParameterAssignments(opts.param ?? [])
        const founder = await readDid(opts.dataDir)
        const nodes = opts.node ?? []
        const given = opts.member
          ? parseMembers(opts.member)
          : { members: [founder], homes: { [founder]: founder } }
        const input = {
          name: opts.name,
          members: given.members,
          nodes: nodes.includes(founder) ? nodes : [founder, ...nodes],
          homes: given.homes,
          parameters,
        }
        for (const [member, home] of Object.entries(input.homes))
          if (!input.nodes.includes(home))
            throw new CliError(
              `the home ${JSON.stringify(home.slice(0, 200))} of member ${member} is not one of the nodes: ` +
                'a home must be the founder or be given with --node too',
              EXIT.usage,
              'INVALID_GENESIS',
            )
        checkGenesisInput(input)
        if (!opts.force && (await fileExists(file)))
          throw new CliError(
            `${file} already exists (use --force to replace it)`,
            EXIT.usage,
            'GENESIS_EXISTS',
          )

        const signer = await unlockIdentity(opts.dataDir, await passphraseFor(opts))
        if (signer.did !== founder)
          throw new CliError(`the keystore in ${opts.dataDir} changed while reading it`)
        const f = createGenesis(signer, input)
        await writeGenesisFile(file, f, { force: opts.force }).catch(asUsage)
        const s = await summary(f, file)
        output(opts, s, () => describeFederation(s, 'wrote'))
      },
    )

  fed
    .command('show <file>')
    .description('Read a genesis CAR file, check it fully (signature included) and print the federation')
    .option('--json', 'print JSON')
    .action(async (path: string, opts: GlobalOpts) => {
      const { readGenesisFile } = await federation()
      const file = resolve(path)
      const f = await readGenesisFile(file).catch(asUsage)
      const s = await summary(f, file)
      output(opts, s, () => describeFederation(s, 'read'))
    })

  fed
    .command('psk')
    .description(
      'Write a new libp2p pre-shared key (swarm.key format) for --psk-file: every node of the federation needs ' +
        'the same file; a peer without it cannot connect at all',
    )
    .requiredOption('--out <file>', 'where to write it (mode 0600; an existing file is never overwritten)')
    .option('--json', 'print JSON')
    .action(async (opts: GlobalOpts & { out: string }) => {
      const { generateKey } = await import('@libp2p/pnet')
      const { writeFile } = await import('node:fs/promises')
      const file = resolve(opts.out)
      const key = new Uint8Array(95)
      generateKey(key)
      await writeFile(file, key, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') throw new CliError(`${file} exists; choose another --out`, EXIT.usage)
        throw err
      })
      output(opts, { file }, `wrote ${file}; start every node with --psk-file pointing to a copy of it`)
    })

  fed
    .command('params')
    .description('The federation parameters: default, bounds and meaning')
    .option('--json', 'print JSON')
    .action(async (opts: GlobalOpts) => {
      const { describeParameters } = await federation()
      const rows = describeParameters()
      output(opts, rows, () => {
        const table = [
          ['name', 'default', 'minimum', 'maximum', 'description'],
          ...rows.map((r) => [
            r.name,
            String(r.default),
            String(r.minimum),
            String(r.maximum),
            r.description,
          ]),
        ]
        const widths = [0, 1, 2, 3].map((i) => Math.max(...table.map((row) => row[i]!.length)))
        return table
          .map((row) =>
            row
              .map((cell, i) =>
                i < 4 ? (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)) : cell,
              )
              .join('  '),
          )
          .join('\n')
      })
    })
}

async function fileExists(path: string): Promise<boolean> {
  const { stat } = await import('node:fs/promises')
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}
