import { randomBytes } from 'node:crypto'
import type { Command } from 'commander'
// Types only: the account as the API shows it (one definition, the ledger's).
import type { AccountView } from '../../economics/ledger.js'
import { isDid } from '../../identity/index.js'
import { CliError, clientFor, EXIT, type GlobalOpts, output } from '../common.js'

const apiOptions = (cmd: Command): Command =>
  cmd
    .option('--api <url>', 'node API URL (or ICN_API)')
    .option('--data-dir <dir>', 'find the API URL in this data folder')
    .option('--json', 'print JSON')

async function routes(): Promise<typeof import('../../api/routes.js')['routes']> {
  return (await import('../../api/routes.js')).routes
}

/**
 * `--at`: an ISO-8601 instant, sent to the node in UTC (the node parses it again and refuses bad ones with
 * INVALID_INSTANT). A malformed one is a usage error (exit 2) with the same code, before any request.
 */
export function atOption(at: string | undefined): { at?: string } {
  if (at === undefined) return {}
  const ms = Date.parse(at)
  if (Number.isNaN(ms) || Math.abs(ms) > 8.64e15)
    throw new CliError(
      `--at must be an ISO-8601 instant, e.g. 2026-12-01T12:00:00Z (UTC) or 2026-12-01T13:00:00+01:00, got ${JSON.stringify(at)}`,
      EXIT.usage,
      'INVALID_INSTANT',
    )
  return { at: new Date(ms).toISOString() }
}

/**
 * An account id as the user typed it (`mana balance DID`, `--to DID`): a did:key (a member's or a node's) or
 * `treasury`. Anything else is refused before any request, as a usage error (exit 2, INVALID_DID).
 */
export function parseAccountId(text: string, what: string): string {
  const id = text.trim()
  if (id === 'treasury') return id
  if (!isDid(id))
    throw new CliError(
      `${what} must be an account id: a member's or node's did:key (did:key:z6Mk…) or \`treasury\`, got ${JSON.stringify(text)}; \`icn mana accounts\` lists them`,
      EXIT.usage,
      'INVALID_DID',
    )
  return id
}

/**
 * The node's refusals, with what a new user can do about each: the code and the node's message stay as they
 * are (scripts match on the code; main() picks the exit status), a hint is added.
 */
const HINTS: Readonly<Record<string, string>> = {
  UNKNOWN_ACCOUNT:
    'The federation has an account for each founding member, each node and `treasury` only; `icn mana accounts` lists them',
  NOT_A_MEMBER:
    "Only the genesis' founding members have accounts (`icn federation show GENESIS` lists them); a member created with `icn member new` is not one until a genesis names it",
  INSUFFICIENT_MANA:
    "Nothing was written. Mana regenerates up to the federation's manaCap over manaRegenSeconds (its parameters: GET /v1/federation); see the balance with `icn mana balance DID`",
  SELF_TRANSFER: 'Nothing was written',
  RECORD_REPLAYED: 'Nothing was written: this signed record was already used',
  NO_LEDGER: 'This node runs without a federation; use a node of the federation (e.g. a devnet node)',
  HOME_UNREACHABLE: "Nothing was written; try again once the member's home node is up, or send it there",
}

async function withHints<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    const e = err as { name?: string; code?: string; message?: string }
    const hint = e.code ? HINTS[e.code] : undefined
    if (e.name === 'ApiError' && hint && typeof e.message === 'string' && !e.message.includes(hint)) {
      try {
        ;(err as { message: string }).message = `${e.message.replace(/\.?$/, '.')} ${hint}.`
      } catch {
        // a frozen message: keep the original
      }
    }
    throw err
  }
}

function describeAccount(a: AccountView): string {
  return [
    `${a.did} (${a.kind}, home ${a.home})`,
    `  balance ${a.balance} (mana ${a.mana} + credit ${a.credit}), held ${a.held}`,
    `  allocated ${a.allocated}, regenerated ${a.regenerated}, received ${a.received}, sent ${a.sent}, burned ${a.burned}`,
    `  as of ${a.at}`,
  ].join('\n')
}

/** A positive integer amount (smallest units), or a usage error. */
export function parseAmount(text: string): number {
  const n = /^[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN
  if (!Number.isSafeInteger(n) || n < 1)
    throw new CliError(
      `--amount must be a positive integer (smallest units), got ${JSON.stringify(text)}`,
      EXIT.usage,
      'INVALID_AMOUNT',
    )
  return n
}

export function registerMana(program: Command): void {
  const mana = program
    .command('mana')
    .description('The mana ledger: balances, accounts and member-signed transfers')

  apiOptions(
    mana
      .command('balance <did>')
      .description('One account (a member or node DID, or `treasury`): balance, held and running totals')
      .option('--at <iso-time>', 'the state as of this instant (default now)'),
  ).action(async (did: string, opts: GlobalOpts & { at?: string }) => {
    const id = parseAccountId(did, 'the account (DID argument)')
    const query = atOption(opts.at)
    const r = await routes()
    const client = await clientFor(opts)
    const a = (await withHints(() =>
      client.call(r.getAccount, { params: { did: id }, query }),
    )) as AccountView
    output(opts, a, () => describeAccount(a))
  })

  apiOptions(
    mana
      .command('accounts')
      .description('Every account the node knows (members, nodes, treasury)')
      .option('--at <iso-time>', 'the state as of this instant (default now)'),
  ).action(async (opts: GlobalOpts & { at?: string }) => {
    const query = atOption(opts.at)
    const r = await routes()
    const client = await clientFor(opts)
    const res = await withHints(() => client.call(r.listAccounts, { query }))
    output(opts, res, () => {
      const rows = (res.accounts as AccountView[]).map(
        (a) =>
          `${a.did.padEnd(58)} ${a.kind.padEnd(8)} ${String(a.balance).padStart(12)} ${String(a.held).padStart(10)}`,
      )
      return [
        `as of ${res.at}`,
        `${'account'.padEnd(58)} ${'kind'.padEnd(8)} ${'balance'.padStart(12)} ${'held'.padStart(10)}`,
        ...rows,
      ].join('\n')
    })
  })

  apiOptions(
    mana
      .command('transfer')
      .description(
        "Move mana from a member's account to any account of the federation, signed with the member's key and sent to its home node",
      )
      .requiredOption(
        '--member <dir>',
        "the paying member's folder (icn member new --dir, or a devnet member's)",
      )
      .requiredOption('--to <did>', "the payee's account: a member or node DID, or `treasury`")
      .requiredOption('--amount <n>', 'a positive integer, in smallest units')
      .option('--expires-in <seconds>', 'how long the signed record stays valid', '300')
      .option('--passphrase-file <file>', "read the member's passphrase from this file"),
  ).action(
    async (
      opts: GlobalOpts & {
        member: string
        to: string
        amount: string
        expiresIn: string
        passphraseFile?: string
      },
    ) => {
      const amount = parseAmount(opts.amount)
      const to = parseAccountId(opts.to, '--to')
      const expiresIn = /^[0-9]{1,7}$/.test(opts.expiresIn) ? Number(opts.expiresIn) : Number.NaN
      if (!Number.isSafeInteger(expiresIn) || expiresIn < 1)
        throw new CliError(
          `--expires-in must be a positive number of seconds, got ${JSON.stringify(opts.expiresIn)}`,
          EXIT.usage,
        )
      const { openMember } = await import('../member.js')
      const member = await openMember(opts.member, { passphraseFile: opts.passphraseFile })
      // The member's home node: --api / ICN_API, else --data-dir, else the data folder its folder records (a
      // devnet member's node); any node of the federation would forward it.
      const useHome = !opts.api && !process.env.ICN_API && !opts.dataDir && member.homeDataDir
      const client = await clientFor(useHome ? { ...opts, dataDir: member.homeDataDir } : opts)
      const r = await routes()
      const federation = await withHints(() => client.call(r.getFederation))
      const { signRecord, recordToJson } = await import('../../economics/records.js')
      const record = signRecord(member.signer, {
        kind: 'transfer',
        federation: federation.id,
        member: member.did,
        to,
        amount,
        nonce: randomBytes(16).toString('base64url'),
        expires: Date.now() + expiresIn * 1000,
      })
      const receipt = await withHints(() =>
        client.call(r.postTransfer, { body: recordToJson(record) as never }),
      )
      output(opts, receipt, () =>
        [
          `transferred ${amount} from ${receipt.from.did} to ${receipt.to.did}`,
          `  written by the payer's home node ${receipt.from.home}`,
          `  in ledger block ${receipt.cid} (seq ${receipt.seq}, op ${receipt.index}) at ${receipt.ts}`,
          `  balances now: payer ${receipt.from.balance}, payee ${receipt.to.balance} (as the home node folded it; other nodes show it once the block reaches them)`,
        ].join('\n'),
      )
    },
  )
}
