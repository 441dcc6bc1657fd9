import { randomBytes } from 'node:crypto'
import type { Command } from 'commander'
import { CliError, clientFor, EXIT, type GlobalOpts, output } from '../common.js'

const apiOptions = (cmd: Command): Command =>
  cmd
    .option('--api <url>', 'node API URL (or ICN_API)')
    .option('--data-dir <dir>', 'find the API URL in this data folder')
    .option('--json', 'print JSON')

async function routes(): Promise<typeof import('../../api/routes.js')['routes']> {
  return (await import('../../api/routes.js')).routes
}

interface AccountJson {
  did: string
  kind: string
  home: string
  balance: number
  mana: number
  credit: number
  held: number
  allocated: number
  regenerated: number
  received: number
  sent: number
  burned: number
  at: string
}

/** `--at`: an ISO-8601 instant, passed on as is (the node parses it and refuses bad ones with INVALID_INSTANT). */
function atOption(at: string | undefined): { at?: string } {
  if (at === undefined) return {}
  if (Number.isNaN(Date.parse(at)))
    throw new CliError(
      `--at must be an ISO-8601 instant (e.g. 2026-12-01T12:00:00Z), got ${JSON.stringify(at)}`,
      EXIT.usage,
    )
  return { at: new Date(Date.parse(at)).toISOString() }
}

function describeAccount(a: AccountJson): string {
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
    const r = await routes()
    const a = (await (
      await clientFor(opts)
    ).call(r.getAccount, {
      params: { did },
      query: atOption(opts.at),
    })) as AccountJson
    output(opts, a, () => describeAccount(a))
  })

  apiOptions(
    mana
      .command('accounts')
      .description('Every account the node knows (members, nodes, treasury)')
      .option('--at <iso-time>', 'the state as of this instant (default now)'),
  ).action(async (opts: GlobalOpts & { at?: string }) => {
    const r = await routes()
    const res = await (await clientFor(opts)).call(r.listAccounts, { query: atOption(opts.at) })
    output(opts, res, () => {
      const rows = (res.accounts as AccountJson[]).map(
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
      const federation = await client.call(r.getFederation)
      const { signRecord, recordToJson } = await import('../../economics/records.js')
      const record = signRecord(member.signer, {
        kind: 'transfer',
        federation: federation.id,
        member: member.did,
        to: opts.to,
        amount,
        nonce: randomBytes(16).toString('base64url'),
        expires: Date.now() + expiresIn * 1000,
      })
      const receipt = await client.call(r.postTransfer, { body: recordToJson(record) as never })
      output(opts, receipt, () =>
        [
          `transferred ${amount} from ${receipt.from.did} to ${receipt.to.did}`,
          `  in ledger block ${receipt.cid} (${receipt.chain} seq ${receipt.seq}, op ${receipt.index}) at ${receipt.ts}`,
          `  ${receipt.from.did}: balance ${receipt.from.balance}`,
          `  ${receipt.to.did}: balance ${receipt.to.balance}`,
        ].join('\n'),
      )
    },
  )
}
