/**
 * `icn mana` and `icn member` end to end, as a user runs them against a 3-node devnet (real processes): a
 * member-signed transfer to a member homed at another node, then the same figures `--at` the same instant on every
 * node; refusals (exit 1) and bad input (exit 2) with their codes on stderr and nothing written; `--member` of a
 * folder that holds no member; a new member made with `icn member new` (not in the genesis) is refused. One devnet
 * for the whole file, the tests in order.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type CliResult, killAll, removeTempDirs, runCli, tempDir } from '../helpers/process.js'

interface NodeStatus {
  name: string
  apiUrl: string
  apiKey: string
  did: string
  dataDir: string
  pid: number | null
  member: { did: string; dir: string } | null
}

interface Account {
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

interface Receipt {
  cid: string
  chain: string
  seq: number
  index: number
  ts: string
  from: Account
  to: Account
}

let dir: string
let work: string
let nodes: NodeStatus[]
/** nodeK and memberK (homed at nodeK). */
let n1: NodeStatus
let n2: NodeStatus
let n3: NodeStatus
let m1: { did: string; dir: string }
let m2: { did: string; dir: string }
let m3: { did: string; dir: string }
/** The first transfer's receipt (member1 → member2), which later tests compare with. */
let first: Receipt

function ok(r: CliResult): CliResult {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
  return r
}

/** Exit `code` with `icn: ERROR_CODE: ` on stderr and nothing on stdout. */
function fails(r: CliResult, code: number, errorCode: string): CliResult {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(code)
  expect(r.stderr).toContain(`icn: ${errorCode}: `)
  expect(r.stdout).toBe('')
  return r
}

function icn(args: string[], opts: { env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  return runCli(args, { timeoutMs: 20_000, ...opts })
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`)
  return (await res.json()) as T
}

/** The sequence number of the head of `node`'s ledger chain as `on` holds it (-1: none yet). */
async function ledgerHead(on: NodeStatus, node: NodeStatus): Promise<number> {
  const { chains } = await getJson<{ chains: { chain: string; seq: number }[] }>(`${on.apiUrl}/v1/dag/chains`)
  return chains.find((c) => c.chain === `${node.did}/ledger`)?.seq ?? -1
}

/** Poll until `fn` is true (a block reaching a node and being folded takes a moment); fail after `timeoutMs`. */
async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Every node holds every ledger chain up to its writer's head and has folded it: the federation's total `sent`
 * (which never regenerates) is `totalSent`, what the tests have transferred so far.
 */
async function allFolded(totalSent: number): Promise<void> {
  const heads = await Promise.all(nodes.map((n) => ledgerHead(n, n)))
  for (const on of nodes)
    await until(`${on.name} to fold every ledger chain`, async () => {
      const held = await Promise.all(nodes.map((n) => ledgerHead(on, n)))
      const { accounts } = await getJson<{ accounts: Account[] }>(`${on.apiUrl}/v1/accounts`)
      const sent = accounts.reduce((s, a) => s + a.sent, 0)
      const received = accounts.reduce((s, a) => s + a.received, 0)
      return held.every((h, i) => h === heads[i]) && sent === totalSent && received === totalSent
    })
}

function memberOf(n: NodeStatus): { did: string; dir: string } {
  if (!n.member) throw new Error(`${n.name} has no member`)
  return n.member
}

beforeAll(async () => {
  work = await tempDir('icn-mana-')
  dir = join(work, 'devnet')
  const up = await runCli(['devnet', 'up', '--nodes', '3', '--dir', dir, '--timeout', '25', '--json'], {
    timeoutMs: 40_000,
  })
  expect(up.code, up.stderr).toBe(0)
  nodes = (JSON.parse(up.stdout) as { nodes: NodeStatus[] }).nodes
  ;[n1, n2, n3] = nodes as [NodeStatus, NodeStatus, NodeStatus]
  ;[m1, m2, m3] = [memberOf(n1), memberOf(n2), memberOf(n3)]
}, 45_000)

afterAll(async () => {
  await runCli(['devnet', 'down', '--dir', dir, '--clean'], { timeoutMs: 25_000 }).catch(() => {})
  await killAll()
  await removeTempDirs()
}, 40_000)

describe.sequential('icn mana on a devnet', () => {
  it('transfer --json from member1 (homed at node1) to member2 (homed at node2): exit 0 and a receipt', async () => {
    const before = await getJson<Account>(`${n3.apiUrl}/v1/accounts/${m1.did}`)
    expect(before).toMatchObject({ kind: 'member', home: n1.did, sent: 0 })
    // No --api: the member folder knows its home node's data folder.
    const r = ok(
      await icn(['mana', 'transfer', '--member', m1.dir, '--to', m2.did, '--amount', '250', '--json']),
    )
    first = JSON.parse(r.stdout) as Receipt
    expect(first).toMatchObject({
      chain: `${n1.did}/ledger`,
      seq: 0,
      index: 0,
      from: { did: m1.did, kind: 'member', home: n1.did, sent: 250, received: 0, at: first.ts },
      to: { did: m2.did, kind: 'member', home: n2.did, received: 250, credit: 250, sent: 0, at: first.ts },
    })
    expect(first.cid).toMatch(/^bafy/)
    expect(first.from.balance + first.from.held).toBe(
      first.from.allocated + first.from.regenerated + first.from.received - first.from.sent,
    )
    expect(first.to.balance).toBe(first.to.mana + first.to.credit)
    expect(r.stderr).toBe('')
  })

  it('balance --at the transfer instant prints the same figures on every node', async () => {
    await allFolded(250)
    const json = await Promise.all(
      nodes.map((n) => icn(['mana', 'balance', m2.did, '--at', first.ts, '--json', '--data-dir', n.dataDir])),
    )
    for (const [i, r] of json.entries()) expect(JSON.parse(ok(r).stdout), nodes[i]!.name).toEqual(first.to)
    const payer = await Promise.all(
      nodes.map((n) => icn(['mana', 'balance', m1.did, '--at', first.ts, '--json', '--api', n.apiUrl])),
    )
    for (const [i, r] of payer.entries()) expect(JSON.parse(ok(r).stdout), nodes[i]!.name).toEqual(first.from)

    // The human text, the same on every node; an --at in another zone is the same instant.
    const zoned = new Date(Date.parse(first.ts) + 3_600_000).toISOString().replace('Z', '+01:00')
    const text = await Promise.all(
      nodes.map((n) => icn(['mana', 'balance', m2.did, '--at', zoned, '--data-dir', n.dataDir])),
    )
    for (const r of text) expect(ok(r).stdout).toBe(text[0]!.stdout)
    expect(text[0]!.stdout).toBe(
      [
        `${m2.did} (member, home ${n2.did})`,
        `  balance ${first.to.balance} (mana ${first.to.mana} + credit 250), held 0`,
        `  allocated ${first.to.allocated}, regenerated ${first.to.regenerated}, received 250, sent 0, burned 0`,
        `  as of ${first.ts}`,
        '',
      ].join('\n'),
    )
  })

  it('accounts --json --at T is identical on every node, and the books balance', async () => {
    // A second transfer, sent to node3 (not the payer's home), which forwards it to node2.
    const r = ok(
      await icn([
        'mana',
        'transfer',
        '--member',
        m2.dir,
        '--to',
        m3.did,
        '--amount',
        '40',
        '--data-dir',
        n3.dataDir,
        '--json',
      ]),
    )
    const second = JSON.parse(r.stdout) as Receipt
    expect(second).toMatchObject({ chain: `${n2.did}/ledger`, seq: 0, from: { did: m2.did, sent: 40 } })
    await allFolded(290)
    const at = second.ts
    const outs = await Promise.all(
      nodes.map((n) => icn(['mana', 'accounts', '--json', '--at', at, '--data-dir', n.dataDir])),
    )
    const lists = outs.map((o) => JSON.parse(ok(o).stdout) as { at: string; accounts: Account[] })
    for (const l of lists.slice(1)) expect(l).toEqual(lists[0])
    const { accounts } = lists[0]!
    expect(lists[0]!.at).toBe(at)
    expect(accounts.map((a) => a.did).sort()).toEqual(
      [m1.did, m2.did, m3.did, n1.did, n2.did, n3.did, 'treasury'].sort(),
    )
    for (const a of accounts) {
      expect(a.balance + a.held, a.did).toBe(a.allocated + a.regenerated + a.received - a.sent - a.burned)
      expect(a.at).toBe(at)
    }
    const by = new Map(accounts.map((a) => [a.did, a]))
    expect(by.get(m1.did)).toMatchObject({ sent: 250, received: 0 })
    expect(by.get(m2.did)).toMatchObject({ sent: 40, received: 250 })
    expect(by.get(m3.did)).toMatchObject({ sent: 0, received: 40 })
    expect(accounts.reduce((s, a) => s + a.sent, 0)).toBe(accounts.reduce((s, a) => s + a.received, 0))

    const table = ok(await icn(['mana', 'accounts', '--at', at, '--data-dir', n1.dataDir])).stdout
    expect(table).toMatch(new RegExp(`^as of ${at}\\naccount\\s+kind\\s+balance\\s+held\\n`))
    expect(table).toMatch(new RegExp(`^${m3.did}\\s+member\\s+${by.get(m3.did)!.balance}\\s+0$`, 'm'))
    expect(table).toMatch(/^treasury\s+treasury\s+0\s+0$/m)
  })

  it('transfer prints a readable receipt without --json', async () => {
    const r = ok(await icn(['mana', 'transfer', '--member', m3.dir, '--to', 'treasury', '--amount', '7']))
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines[0]).toBe(`transferred 7 from ${m3.did} to treasury`)
    expect(lines[1]).toBe(`  written by the payer's home node ${n3.did}`)
    expect(lines[2]).toMatch(/^ {2}in ledger block bafy\S+ \(seq 0, op 0\) at \d{4}-\d\d-\d\dT/)
    expect(lines[3]).toMatch(/^ {2}balances now: payer \d+, payee 7 /)
    await allFolded(297)
  })

  it('not enough mana: exit 1, INSUFFICIENT_MANA on stderr, nothing written', async () => {
    const heads = await Promise.all(nodes.map((n) => ledgerHead(n, n)))
    const before = await getJson<Account>(`${n1.apiUrl}/v1/accounts/${m1.did}`)
    const r = fails(
      await icn([
        'mana',
        'transfer',
        '--member',
        m1.dir,
        '--to',
        m2.did,
        '--amount',
        '1000000000000',
        '--json',
      ]),
      1,
      'INSUFFICIENT_MANA',
    )
    expect(r.stderr).toContain(`cannot pay 1000000000000`)
    expect(r.stderr).toContain('Nothing was written')
    // Through a node that is not the payer's home, the same refusal (forwarded back).
    fails(
      await icn([
        'mana',
        'transfer',
        '--member',
        m1.dir,
        '--to',
        m2.did,
        '--amount',
        '1000000000000',
        '--api',
        n2.apiUrl,
      ]),
      1,
      'INSUFFICIENT_MANA',
    )
    expect(await Promise.all(nodes.map((n) => ledgerHead(n, n)))).toEqual(heads)
    const after = await getJson<Account>(`${n1.apiUrl}/v1/accounts/${m1.did}`)
    expect(after).toMatchObject({ sent: before.sent, received: before.received, held: before.held })
  })

  it('bad input exits 2 with its code and writes nothing', async () => {
    const heads = await Promise.all(nodes.map((n) => ledgerHead(n, n)))
    const unknown = 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'
    const transfer = (to: string, amount: string): Promise<CliResult> =>
      icn(['mana', 'transfer', '--member', m1.dir, '--to', to, '--amount', amount])
    const [zero, word, neg, frac, huge, badTo, unknownTo, self] = await Promise.all([
      transfer(m2.did, '0'),
      transfer(m2.did, 'x'),
      transfer(m2.did, '-5'),
      transfer(m2.did, '1.5'),
      transfer(m2.did, '99999999999999999'),
      transfer('garbage', '5'),
      transfer(unknown, '5'),
      transfer(m1.did, '5'),
    ])
    for (const r of [zero, word, frac, huge])
      expect(fails(r, 2, 'INVALID_AMOUNT').stderr).toContain('--amount')
    expect(neg.code, neg.stderr).toBe(2) // commander: `-5` is no value for --amount
    expect(fails(badTo, 2, 'INVALID_DID').stderr).toContain('--to must be an account id')
    expect(fails(unknownTo, 2, 'UNKNOWN_ACCOUNT').stderr).toContain('icn mana accounts')
    fails(self, 2, 'SELF_TRANSFER')

    const [atBalance, atAccounts, badDid, unknownDid, noAmount, expires] = await Promise.all([
      icn(['mana', 'balance', m1.did, '--at', 'garbage', '--data-dir', n1.dataDir]),
      icn(['mana', 'accounts', '--at', 'yesterday', '--json', '--data-dir', n1.dataDir]),
      icn(['mana', 'balance', 'garbage', '--data-dir', n1.dataDir]),
      icn(['mana', 'balance', unknown, '--json', '--data-dir', n1.dataDir]),
      icn(['mana', 'transfer', '--member', m1.dir, '--to', m2.did]),
      icn(['mana', 'transfer', '--member', m1.dir, '--to', m2.did, '--amount', '5', '--expires-in', '0']),
    ])
    expect(fails(atBalance, 2, 'INVALID_INSTANT').stderr).toContain('--at must be an ISO-8601 instant')
    fails(atAccounts, 2, 'INVALID_INSTANT')
    fails(badDid, 2, 'INVALID_DID')
    fails(unknownDid, 2, 'UNKNOWN_ACCOUNT')
    expect(noAmount.code).toBe(2)
    expect(noAmount.stderr).toContain('--amount')
    expect(expires.code).toBe(2)
    expect(expires.stderr).toContain('--expires-in')

    expect(await Promise.all(nodes.map((n) => ledgerHead(n, n)))).toEqual(heads)
  })

  it('--member of a folder without a member is a clear error (exit 1), before anything is sent', async () => {
    const empty = join(work, 'empty')
    await mkdir(empty)
    const [none, missing, nodeDir] = await Promise.all([
      icn(['mana', 'transfer', '--member', empty, '--to', m2.did, '--amount', '5']),
      icn(['mana', 'transfer', '--member', join(work, 'nope'), '--to', m2.did, '--amount', '5']),
      icn(['mana', 'transfer', '--member', n1.dataDir, '--to', m2.did, '--amount', '5']),
    ])
    expect(fails(none, 1, 'MEMBER_NOT_FOUND').stderr).toContain(`no member in ${empty}`)
    expect(fails(missing, 1, 'MEMBER_NOT_FOUND').stderr).toContain('icn member new --dir')
    // A node's data folder: say what it is, not "create a member there" (which would be refused).
    const msg = fails(nodeDir, 1, 'MEMBER_NOT_FOUND').stderr
    expect(msg).toContain(`${n1.dataDir} holds a node's identity`)
    expect(msg).toContain('members/memberN')
  })

  it('member new --json then member show (ICN_PASSPHRASE); that member is in no genesis: NOT_A_MEMBER, exit 1', async () => {
    const alice = join(work, 'alice')
    const env = { ICN_PASSPHRASE: 'alice passphrase 1234' }
    const created = JSON.parse(
      ok(await icn(['member', 'new', '--dir', alice, '--home', n2.did, '--json'], { env })).stdout,
    ) as { did: string; dir: string; keystore: string; home: string }
    expect(created).toEqual({
      did: created.did,
      dir: alice,
      keystore: join(alice, 'keystore.json'),
      home: n2.did,
    })
    const shown = JSON.parse(ok(await icn(['member', 'show', '--dir', alice, '--json'], { env })).stdout)
    expect(shown).toEqual(created)

    const heads = await Promise.all(nodes.map((n) => ledgerHead(n, n)))
    const r = fails(
      await icn(
        ['mana', 'transfer', '--member', alice, '--to', m2.did, '--amount', '5', '--api', n2.apiUrl],
        {
          env,
        },
      ),
      1,
      'NOT_A_MEMBER',
    )
    expect(r.stderr).toContain(`${created.did} is not a member of this federation`)
    expect(r.stderr).toContain('founding members')
    // A wrong passphrase for the member's keystore is exit 1 too, and nothing is sent.
    fails(
      await icn(
        ['mana', 'transfer', '--member', alice, '--to', m2.did, '--amount', '5', '--api', n2.apiUrl],
        {
          env: { ICN_PASSPHRASE: 'not the passphrase' },
        },
      ),
      1,
      'WRONG_PASSPHRASE',
    )
    expect(await Promise.all(nodes.map((n) => ledgerHead(n, n)))).toEqual(heads)
    // Its account does not exist anywhere.
    fails(await icn(['mana', 'balance', created.did, '--api', n3.apiUrl]), 2, 'UNKNOWN_ACCOUNT')
  })
})
