// First: libp2p (loaded by some commands) needs Promise.withResolvers, which Node 20 lacks.
import '../polyfill.js'
import { Command, CommanderError } from 'commander'
import { VERSION } from '../version.js'
import { registerDag } from './commands/dag.js'
import { registerDevnet } from './commands/devnet.js'
import { registerFederation } from './commands/federation.js'
import { registerId } from './commands/id.js'
import { registerInit } from './commands/init.js'
import { registerMana } from './commands/mana.js'
import { registerMember } from './commands/member.js'
import { registerNode } from './commands/node.js'
import { CliError, EXIT } from './common.js'

/**
 * Error codes that mean the user's input was wrong (exit 2) rather than the operation failing (exit 1): a
 * malformed or inconsistent flag, an input file named on the command line (genesis, passphrase file, CAR) that
 * is missing or is not what it should be, a passphrase that cannot be used for a new keystore, a database that
 * does not exist, a folder for a new member that already holds one, an account id that names no account of the
 * federation (UNKNOWN_ACCOUNT, like UNKNOWN_NODE for a devnet node's name). Commander's own errors (unknown option or
 * command, missing argument) are 2 as well. Exit 1 is an operation that was tried and failed: a wrong passphrase
 * for an existing keystore (like an invalid signature), a data folder, devnet folder or member folder with nothing
 * in it yet, a data folder that already holds an identity, or a ledger refusal of a well-formed request
 * (INSUFFICIENT_MANA, NOT_A_MEMBER, RECORD_REPLAYED: statuses 403/409). The node's 400 answers (a refusal of the
 * user's input: INVALID_AMOUNT, INVALID_INSTANT, SELF_TRANSFER, …) are 2, and so is an API error whose code is
 * listed here.
 */
export const USAGE_CODES: ReadonlySet<string> = new Set([
  'USAGE',
  'INVALID_OPTION',
  'INVALID_DID',
  'INVALID_DOMAIN_TAG',
  'INVALID_PARAMETER',
  'INVALID_GENESIS',
  'GENESIS_NOT_FOUND',
  'GENESIS_EXISTS',
  'NOT_A_FEDERATION_NODE',
  'PASSPHRASE_REQUIRED',
  'PASSPHRASE_MISMATCH',
  'PASSPHRASE_TOO_SHORT',
  'PASSPHRASE_FILE_UNREADABLE',
  'UNKNOWN_NODE',
  'DATABASE_NOT_FOUND',
  'MEMBER_EXISTS',
  'UNKNOWN_ACCOUNT',
  'INVALID_INSTANT',
  'INVALID_AMOUNT',
])

export function buildProgram(): Command {
  const program = new Command('icn')
    .description('InterCooperative Network node and command-line client')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride()
  registerInit(program)
  registerId(program)
  registerNode(program)
  registerDag(program)
  registerDevnet(program)
  registerFederation(program)
  registerMana(program)
  registerMember(program)
  for (const cmd of allCommands(program)) cmd.exitOverride()
  return program
}

function allCommands(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...allCommands(c)])
}

/** Run the CLI; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv, { from: 'user' })
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
        return EXIT.ok
      return EXIT.usage
    }
    const e = err as { code?: string; message?: string; status?: number }
    const prefix = e.code && e.code !== 'FAILED' && e.code !== 'USAGE' ? `${e.code}: ` : ''
    process.stderr.write(`icn: ${prefix}${e.message ?? String(err)}\n`)
    if (err instanceof CliError) return err.exitCode
    // An ApiError from the client, known by shape: the API module is loaded only by the commands that use it.
    if ((err as Error).name === 'ApiError' && typeof e.status === 'number')
      return e.status === 400 || e.status === 413 || e.status === 415 || (e.code && USAGE_CODES.has(e.code))
        ? EXIT.usage
        : EXIT.failed
    if (e.code && USAGE_CODES.has(e.code)) return EXIT.usage
    return EXIT.failed
  }
}
