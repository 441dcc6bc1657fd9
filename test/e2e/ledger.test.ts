import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Block, type CID, chainId, createSignedBlock } from '../../src/dag/index.js'
import {
  type AccountView,
  LEDGER_BATCH_TYPE,
  type LedgerOp,
  recordToJson,
  type SignedRecord,
  signRecord,
  type TransferFields,
} from '../../src/economics/index.js'
import { Signer } from '../../src/identity/index.js'
import { dumpDifferences } from '../../src/state/index.js'
import { HARNESS_EPOCH, type Harness, startHarness, until } from '../helpers/harness.js'

/**
 * The mana ledger across the nodes of the in-process harness (three IcnNodes over @libp2p/memory on one
 * manual clock), driven through each node's real HTTP API: transfers between members homed on different nodes,
 * forwarding to the home node, concurrent spending, every refusal, regeneration under the clock, a node that
 * was down catching up, the ledger's time rules on crafted blocks, the event stream and the metrics.
 * SQLite stores by default; `ICN_TEST_STORE=postgres` runs the same on PostgreSQL (a database per node).
 */

const CAP = 1_000
const REGEN_SECONDS = 100 // 10 units a second: the manabar refills from 0 in 100 s
const SKEW_MS = 30_000
const TTL_MS = 3_600_000

let h: Harness
/** A fourth node of the genesis that never runs: the test writes its ledger chain by hand (time rules). */
const rogue = Signer.generate()
/** A fifth one, for a first ledger block dated before the genesis. */
const rogue2 = Signer.generate()
const alice = Signer.generate() // homed at node 0
const bob = Signer.generate() // homed at node 1
const carol = Signer.generate() // homed at node 2
const regen = Signer.generate() // homed at node 0, spends only in the regeneration test
const spender = Signer.generate() // homed at node 1, spends only in the concurrency test
const spender2 = Signer.generate() // homed at node 2, spends only in the forwarded concurrency test
const far = Signer.generate() // homed at the rogue node
const outsider = Signer.generate() // no member

let nonces = 0
const nonce = (): string => `nonce-${String(++nonces).padStart(6, '0')}`

function record(
  from: Signer,
  to: string,
  amount: number,
  o: { nonce?: string; expires?: number; federation?: string } = {},
): SignedRecord<TransferFields> {
  return signRecord(from, {
    kind: 'transfer',
    federation: o.federation ?? h.federation.id,
    member: from.did,
    to,
    amount,
    nonce: o.nonce ?? nonce(),
    expires: o.expires ?? h.clock.now() + 600_000,
  })
}

const transfer = (
  from: Signer,
  to: string,
  amount: number,
  o?: Parameters<typeof record>[3],
): Record<string, unknown> => recordToJson(record(from, to, amount, o))

interface Answer {
  status: number
  body: Record<string, unknown> & { code?: string }
}

/** POST /v1/ledger/transfers on node i (a string body goes as it is). */
async function post(i: number, body: unknown): Promise<Answer> {
  const res = await fetch(`${h.node(i).apiUrl}/v1/ledger/transfers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  return { status: res.status, body: (await res.json()) as Answer['body'] }
}

interface Receipt {
  cid: string
  chain: string
  seq: number
  index: number
  ts: string
  from: AccountView
  to: AccountView
}

async function accepted(i: number, body: unknown): Promise<Receipt> {
  const a = await post(i, body)
  if (a.status !== 201) throw new Error(`transfer refused: ${a.status} ${JSON.stringify(a.body)}`)
  return a.body as unknown as Receipt
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`)
  return (await res.json()) as T
}

const iso = (ms: number): string => new Date(ms).toISOString()

/** GET /v1/accounts on node i, as of `at` (ms) or, without it, the node's now. */
async function accounts(i: number, at?: number): Promise<AccountView[]> {
  const q = at === undefined ? '' : `?at=${encodeURIComponent(iso(at))}`
  return (await getJson<{ accounts: AccountView[] }>(`${h.node(i).apiUrl}/v1/accounts${q}`)).accounts
}

async function account(i: number, did: string, at?: number): Promise<AccountView> {
  const q = at === undefined ? '' : `?at=${encodeURIComponent(iso(at))}`
  return getJson<AccountView>(`${h.node(i).apiUrl}/v1/accounts/${encodeURIComponent(did)}${q}`)
}

const byDid = (list: AccountView[]): Map<string, AccountView> => new Map(list.map((a) => [a.did, a]))

/** Wait until the block is stored and folded on every running node (or on `on`). */
async function folded(r: { cid: string; chain: string; seq: number }, on?: number[]): Promise<void> {
  const nodes = on ?? h.running()
  await h.waitForBlock(r.cid, { on: nodes })
  await Promise.all(nodes.map((i) => h.node(i).state.waitFor(r.chain, r.seq)))
}

/** The books balance: per account and across the federation. */
function expectBooksBalance(list: AccountView[]): void {
  for (const a of list) {
    expect(a.balance, `${a.did} balance = mana + credit`).toBe(a.mana + a.credit)
    expect(a.balance + a.held, `books of ${a.did}`).toBe(
      a.allocated + a.regenerated + a.received - a.sent - a.burned,
    )
  }
  const sum = (k: 'received' | 'sent'): number => list.reduce((n, a) => n + a[k], 0)
  expect(sum('received')).toBe(sum('sent'))
}

async function metric(i: number, series: string): Promise<number> {
  const text = await h.node(i).metrics.registry.metrics()
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  return 0
}

/** The rogue node's ledger chain, written by hand. */
const rogueChain = (): string => chainId(rogue.did, 'ledger')
const rogueBlocks: Block[] = []
/** The nonce of far's transfer in the rogue chain's first block. */
let firstNonce = ''

/** A transfer op by `far` (homed at the rogue node), its record valid at `ts`. */
type TransferOp = Extract<LedgerOp, { op: 'transfer' }>
const op = (amount: number, ts: number, o: Parameters<typeof record>[3] = {}): TransferOp => ({
  op: 'transfer',
  record: record(far, alice.did, amount, { expires: ts + 60_000, ...o }),
})

/**
 * Sign the rogue node's next ledger block and put it on node 0, as if it had arrived there from the rogue node;
 * node 0 announces it and the others fetch it.
 */
async function writeRogue(ts: number, body: unknown, signer: Signer = rogue): Promise<Block> {
  const prev = rogueBlocks.at(-1)
  const b = createSignedBlock(signer, {
    type: LEDGER_BATCH_TYPE,
    chain: chainId(signer.did, 'ledger'),
    seq: signer === rogue ? rogueBlocks.length : 0,
    prev: signer === rogue ? ((prev?.cid as CID | undefined) ?? null) : null,
    ts,
    body,
  })
  if (signer === rogue) rogueBlocks.push(b)
  await h.node(0).store.put(b, { source: 'test' })
  return b
}

/** The fold's outcome of each op of a ledger block on node i. */
async function outcomes(i: number, chain: string, seq: number): Promise<(string | null)[]> {
  const rows = await h
    .node(i)
    .store.sql()
    .query('SELECT code FROM ledger_ops WHERE chain = $1 AND seq = $2 ORDER BY idx', [chain, seq])
  return rows.map((r) => (r.code as string | null) ?? null)
}

async function rejection(i: number, chain: string, seq: number): Promise<unknown[]> {
  const rows = await h
    .node(i)
    .store.sql()
    .query('SELECT code FROM state_rejections WHERE projection = $1 AND chain = $2 AND seq = $3', [
      'economics.ledger',
      chain,
      seq,
    ])
  return rows.map((r) => r.code)
}

beforeAll(async () => {
  h = await startHarness({
    nodes: 3,
    store: process.env.ICN_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite',
    extra: [rogue, rogue2],
    members: [
      { signer: alice, home: 0 },
      { signer: bob, home: 1 },
      { signer: carol, home: 2 },
      { signer: regen, home: 0 },
      { signer: spender, home: 1 },
      { signer: spender2, home: 2 },
      { signer: far, home: 3 },
    ],
    parameters: {
      manaCap: CAP,
      manaRegenSeconds: REGEN_SECONDS,
      memberAllocation: CAP,
      treasuryAllocation: 5_000,
      ledgerSkewMs: SKEW_MS,
      recordMaxTtlMs: TTL_MS,
    },
  })
  await h.waitConnected()
})

afterAll(async () => {
  await h?.close()
})

describe('the ledger across nodes', () => {
  it('converges: a transfer between members homed on different nodes shows on every node, accounts(at) identical', async () => {
    const t0 = h.clock.now()
    const before = await Promise.all([0, 1, 2].map((i) => accounts(i, t0)))
    // alice (node 0) pays bob (node 1); then bob pays carol (node 2) part of it
    const r1 = await accepted(0, transfer(alice, bob.did, 250))
    expect(r1.chain).toBe(`${h.nodes[0]!.did}/ledger`)
    expect(r1.ts).toBe(iso(t0)) // the clock has not moved: the block is dated now
    expect(r1.from).toMatchObject({ did: alice.did, balance: CAP - 250, sent: 250 })
    expect(r1.to).toMatchObject({ did: bob.did, balance: CAP + 250, received: 250 })
    await folded(r1)
    for (const i of [0, 1, 2]) {
      const after = byDid(await accounts(i, t0))
      const was = byDid(before[i]!)
      expect(after.get(alice.did)!.balance).toBe(was.get(alice.did)!.balance - 250)
      expect(after.get(bob.did)!.balance).toBe(was.get(bob.did)!.balance + 250)
      expect(await account(i, alice.did, t0)).toEqual(r1.from)
      expect(await account(i, bob.did, t0)).toEqual(r1.to)
      // nothing else moved
      for (const [did, a] of was) if (did !== alice.did && did !== bob.did) expect(after.get(did)).toEqual(a)
    }
    const r2 = await accepted(1, transfer(bob, carol.did, 100))
    expect(r2.chain).toBe(`${h.nodes[1]!.did}/ledger`)
    await folded(r2)
    const at = Date.parse(r2.ts)
    const views = await Promise.all([0, 1, 2].map((i) => accounts(i, at)))
    expect(views[1]).toEqual(views[0])
    expect(views[2]).toEqual(views[0])
    const m = byDid(views[0]!)
    expect(m.get(bob.did)).toMatchObject({ received: 250, sent: 100 })
    expect(m.get(carol.did)).toMatchObject({ received: 100, credit: 100 })
    expect(m.get('treasury')).toMatchObject({
      kind: 'treasury',
      balance: 5_000,
      home: [...h.federation.nodes].sort()[0],
    })
    expectBooksBalance(views[0]!)
    // every account of the genesis is listed: seven members, the four nodes, the treasury
    expect(views[0]!.map((a) => a.did)).toEqual(
      [...h.federation.members, ...h.federation.nodes, 'treasury'].sort(),
    )
  })

  it('verifies a member signature once on its home node (the fold finds it in the cache the API filled), on the others in their fold', async () => {
    const checks = (i: number, where: 'api' | 'fold', result: string) =>
      metric(i, `icn_ledger_signature_checks_total{where="${where}",result="${result}"}`)
    const blockChecks = (i: number, check: string) =>
      metric(i, `icn_dag_block_signatures_total{check="${check}"}`)
    const series = async (i: number) => ({
      apiVerified: await checks(i, 'api', 'verified'),
      foldVerified: await checks(i, 'fold', 'verified'),
      foldCached: await checks(i, 'fold', 'cached'),
      ownBlocks: await blockChecks(i, 'signed_here'),
      verifiedBlocks: await blockChecks(i, 'verified'),
    })
    const before = await Promise.all([0, 1, 2].map(series))
    const r = await accepted(0, transfer(alice, carol.did, 5))
    await folded(r)
    const after = await Promise.all([0, 1, 2].map(series))
    const delta = (i: number) =>
      Object.fromEntries(
        Object.entries(after[i]!).map(([k, v]) => [k, v - before[i]![k as keyof (typeof before)[0]]]),
      )
    // Home node: the API verified it, the fold found it cached; its store took its own block unverified.
    expect(delta(0)).toMatchObject({ apiVerified: 1, foldVerified: 0, foldCached: 1, ownBlocks: 1 })
    // The others know nothing of node 0's cache: they verify the member signature and the block's. (The block
    // may reach a node by gossip and by anti-entropy at once, and each copy is verified before one is stored:
    // so at least once, not exactly once.)
    for (const i of [1, 2]) {
      expect(delta(i)).toMatchObject({ apiVerified: 0, foldVerified: 1, foldCached: 0 })
      expect(delta(i).verifiedBlocks).toBeGreaterThanOrEqual(1)
    }
  })

  it('forwards a record sent to a node that is not its home; a stopped home gives HOME_UNREACHABLE and changes nothing', async () => {
    const forwarded = await metric(0, 'icn_ledger_forwarded_total{outcome="applied"}')
    // bob is homed at node 1; the record goes to node 2, which forwards it
    const r = await accepted(2, transfer(bob, alice.did, 40))
    expect(r.chain).toBe(`${h.nodes[1]!.did}/ledger`)
    expect(r.from).toMatchObject({ did: bob.did })
    await folded(r)
    const at = Date.parse(r.ts)
    for (const i of [0, 1, 2]) expect(await account(i, bob.did, at)).toEqual(r.from)
    expect(await metric(2, 'icn_ledger_forwarded_total{outcome="applied"}')).toBe(1)
    expect(await metric(0, 'icn_ledger_forwarded_total{outcome="applied"}')).toBe(forwarded)

    // carol's home (node 2) is down: node 0 cannot forward her record
    await h.stop(2)
    const t = h.clock.now()
    const before = await Promise.all([0, 1].map((i) => accounts(i, t)))
    const json = transfer(carol, alice.did, 10)
    const refused = await post(0, json)
    expect(refused.status).toBe(503)
    expect(refused.body.code).toBe('HOME_UNREACHABLE')
    expect(await metric(0, 'icn_ledger_forwarded_total{outcome="PEER_UNREACHABLE"}')).toBe(1)
    expect(await Promise.all([0, 1].map((i) => accounts(i, t)))).toEqual(before)

    // far's home (the rogue node) never ran: no node can reach it
    const never = await post(1, transfer(far, alice.did, 10))
    expect({ status: never.status, code: never.body.code }).toEqual({ status: 503, code: 'HOME_UNREACHABLE' })
    expect(await Promise.all([0, 1].map((i) => accounts(i, t)))).toEqual(before)

    // back up: the very same record goes through (its nonce was never used)
    await h.heal(2)
    const again = await accepted(0, json)
    expect(again.chain).toBe(`${h.nodes[2]!.did}/ledger`)
    await folded(again)
  })

  it('50 concurrent transfers of a tenth of the balance each: as many as fit succeed, the rest INSUFFICIENT_MANA', async () => {
    const t = h.clock.now() // the clock stays put while they run: no regeneration in between
    const start = await account(1, spender.did, t)
    expect(start.balance).toBe(CAP)
    const amount = Math.floor(start.balance / 10)
    const fit = Math.floor(start.balance / amount)
    const applied0 = await metric(1, 'icn_ledger_transfers_total{outcome="applied"}')
    const short0 = await metric(1, 'icn_ledger_transfers_total{outcome="INSUFFICIENT_MANA"}')
    const payees = [alice.did, carol.did, 'treasury', h.nodes[2]!.did]
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, k) => post(1, transfer(spender, payees[k % payees.length]!, amount))),
    )
    const ok = answers.filter((a) => a.status === 201)
    const refused = answers.filter((a) => a.status !== 201)
    expect(ok).toHaveLength(fit)
    expect(fit).toBe(10)
    for (const a of refused) {
      expect(a.status).toBe(409)
      expect(a.body.code).toBe('INSUFFICIENT_MANA')
    }
    expect(await metric(1, 'icn_ledger_transfers_total{outcome="applied"}')).toBe(applied0 + fit)
    expect(await metric(1, 'icn_ledger_transfers_total{outcome="INSUFFICIENT_MANA"}')).toBe(short0 + 50 - fit)
    // every accepted one is folded everywhere; the last block written holds the final state
    const receipts = ok.map((a) => a.body as unknown as Receipt)
    const last = receipts.reduce((m, r) => (r.seq > m.seq ? r : m))
    await folded(last)
    for (const i of [0, 1, 2]) {
      const list = await accounts(i, t)
      const s = byDid(list).get(spender.did)!
      expect(s.balance).toBe(start.balance - fit * amount)
      expect(s.balance).toBeGreaterThanOrEqual(0)
      expect(s.sent).toBe(fit * amount)
      expectBooksBalance(list)
    }
  })

  it('the same, sent through every node at once: forwarded ones are checked against the same balance', async () => {
    const t = h.clock.now()
    const start = await account(2, spender2.did, t)
    const amount = Math.floor(start.balance / 10)
    const fit = Math.floor(start.balance / amount)
    // 60 records, 20 to each node: nodes 0 and 1 forward theirs to node 2, spender2's home
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, k) => post(k % 3, transfer(spender2, bob.did, amount))),
    )
    const ok = answers.filter((a) => a.status === 201)
    expect(ok).toHaveLength(fit)
    for (const a of answers.filter((x) => x.status !== 201))
      expect({ status: a.status, code: a.body.code }).toEqual({ status: 409, code: 'INSUFFICIENT_MANA' })
    const receipts = ok.map((a) => a.body as unknown as Receipt)
    for (const r of receipts) expect(r.chain).toBe(`${h.nodes[2]!.did}/ledger`)
    await folded(receipts.reduce((m, r) => (r.seq > m.seq ? r : m)))
    for (const i of [0, 1, 2]) {
      const list = await accounts(i, t)
      expect(byDid(list).get(spender2.did)).toMatchObject({
        balance: start.balance - fit * amount,
        sent: fit * amount,
      })
      expectBooksBalance(list)
    }
    // every refusal the home node gave is counted once, at the home node, whichever node it came through
    expect(await metric(2, 'icn_ledger_transfers_total{outcome="INSUFFICIENT_MANA"}')).toBe(60 - fit)
    expect(
      (await metric(0, 'icn_ledger_forwarded_total{outcome="INSUFFICIENT_MANA"}')) +
        (await metric(1, 'icn_ledger_forwarded_total{outcome="INSUFFICIENT_MANA"}')),
    ).toBe(answers.filter((a, k) => k % 3 !== 2 && a.status === 409).length)
  })

  it('refuses bad records through the HTTP API with their typed error and changes nothing', async () => {
    // one good transfer to replay afterwards
    const good = transfer(alice, bob.did, 5)
    const first = await accepted(0, good)
    await folded(first)
    // After the wait (which moves the harness clock): the boundary cases below are relative to this instant.
    const t = h.clock.now()
    const snapshot = (): Promise<AccountView[][]> => Promise.all([0, 1, 2].map((i) => accounts(i, t)))
    const heads = async (): Promise<unknown[]> =>
      Promise.all([0, 1, 2].map((i) => getJson(`${h.node(i).apiUrl}/v1/dag/chains`)))
    const before = await snapshot()
    const headsBefore = await heads()

    const tampered = { ...transfer(alice, bob.did, 5), amount: 500 }
    const reuse = transfer(alice, bob.did, 6, { nonce: good.nonce as string })
    // [what, body, HTTP status, code, what the message names]
    const cases: [string, unknown, number, string, string?][] = [
      ['the same record again', good, 409, 'RECORD_REPLAYED'],
      ['a new record reusing a nonce', reuse, 409, 'RECORD_REPLAYED'],
      ['expired', transfer(alice, bob.did, 5, { expires: t - 1 }), 400, 'RECORD_EXPIRED'],
      [
        'expiring too far ahead',
        transfer(alice, bob.did, 5, { expires: t + TTL_MS + 1 }),
        400,
        'RECORD_TTL_TOO_LONG',
      ],
      ['from a non-member', transfer(outsider, bob.did, 5), 403, 'NOT_A_MEMBER'],
      ['a tampered amount', tampered, 400, 'INVALID_RECORD_SIGNATURE'],
      ['not JSON', '{"kind": "transfer", ', 400, 'INVALID_JSON'],
      ['not a record', { hello: 'world' }, 400, 'VALIDATION_FAILED'],
      ['no signature', { ...good, sig: undefined }, 400, 'VALIDATION_FAILED', 'sig'],
      ['amount 0', { ...good, amount: 0 }, 400, 'VALIDATION_FAILED', 'body/amount'],
      ['a negative amount', { ...good, amount: -5 }, 400, 'VALIDATION_FAILED', 'body/amount'],
      ['a fractional amount', { ...good, amount: 1.5 }, 400, 'VALIDATION_FAILED', 'body/amount'],
      ['an amount as text', { ...good, amount: '10' }, 400, 'VALIDATION_FAILED', 'body/amount'],
      ['a payee that is no account', transfer(alice, Signer.generate().did, 5), 404, 'UNKNOWN_ACCOUNT'],
      ['a payee that is not even a DID', transfer(alice, 'nobody', 5), 404, 'UNKNOWN_ACCOUNT'],
      ['to itself', transfer(alice, alice.did, 5), 400, 'SELF_TRANSFER'],
      [
        'a control character in the payee',
        { ...good, to: 'did:x\u0000' },
        400,
        'VALIDATION_FAILED',
        'body/to',
      ],
      [
        'for another federation',
        transfer(alice, bob.did, 5, { federation: 'bafyreiother' }),
        400,
        'WRONG_FEDERATION',
      ],
    ]
    // each sent to the member's home node (0) and to a node that forwards it (1): the same answer
    for (const node of [0, 1])
      for (const [what, body, status, code, names] of cases) {
        const a = await post(node, body)
        expect({ what, node, status: a.status, code: a.body.code }).toEqual({ what, node, status, code })
        if (names) expect(a.body.message, what).toContain(names)
      }
    expect(await snapshot()).toEqual(before)
    expect(await heads()).toEqual(headsBefore)
    // the refused records used no nonce: alice's expired one, re-signed in time with its nonce, goes through
    const expired = cases.find((c) => c[0] === 'expired')![1] as { nonce: string }
    const retry = await accepted(0, transfer(alice, bob.did, 5, { nonce: expired.nonce }))
    await folded(retry)

    // the edges are inside: expiring now, and exactly recordMaxTtlMs ahead
    const now = h.clock.now()
    for (const expires of [now, now + TTL_MS])
      await folded(await accepted(0, transfer(alice, bob.did, 1, { expires })))
    // a bad ?at= is INVALID_INSTANT, an unknown account UNKNOWN_ACCOUNT
    const bad = await fetch(`${h.node(0).apiUrl}/v1/accounts?at=yesterday`)
    expect({ status: bad.status, code: ((await bad.json()) as { code: string }).code }).toEqual({
      status: 400,
      code: 'INVALID_INSTANT',
    })
    // a control character in the account id (PostgreSQL text cannot hold U+0000): refused, on both backends
    for (const path of ['/v1/accounts/did%00x', '/v1/members/did%1Fx']) {
      const r = await fetch(`${h.node(0).apiUrl}${path}`)
      expect({ path, status: r.status, code: ((await r.json()) as { code: string }).code }).toEqual({
        path,
        status: 400,
        code: 'VALIDATION_FAILED',
      })
    }
    const none = await fetch(`${h.node(0).apiUrl}/v1/accounts/${encodeURIComponent(outsider.did)}`)
    expect({ status: none.status, code: ((await none.json()) as { code: string }).code }).toEqual({
      status: 404,
      code: 'UNKNOWN_ACCOUNT',
    })
  })

  it('regenerates proportionally (floor) under the clock up to the cap exactly, and stops there', async () => {
    const r = await accepted(0, transfer(regen, 'treasury', 600))
    const t1 = Date.parse(r.ts)
    expect(t1).toBe(h.clock.now())
    expect(r.from).toMatchObject({ balance: CAP - 600, mana: CAP - 600, credit: 0, regenerated: 0 })
    await folded(r)
    const seen = async (): Promise<AccountView[]> => Promise.all([0, 1, 2].map((i) => account(i, regen.did))) // no ?at=: each node's own (shared) clock
    const listed = async (): Promise<(AccountView | undefined)[]> =>
      (await Promise.all([0, 1, 2].map((i) => accounts(i)))).map((l) => byDid(l).get(regen.did))

    // 12.345 s of 100 s: 123.45 units regenerate, 123 count
    h.clock.advance(t1 + 12_345 - h.clock.now())
    for (const a of [...(await seen()), ...(await listed())])
      expect(a).toMatchObject({ mana: 400 + 123, balance: 523, regenerated: 123, at: iso(t1 + 12_345) })
    // one ms short of full
    h.clock.advance(t1 + 59_999 - h.clock.now())
    for (const a of await seen()) expect(a).toMatchObject({ mana: 999, balance: 999 })
    // full: the cap, exactly
    h.clock.advance(1)
    for (const a of await seen()) expect(a).toMatchObject({ mana: CAP, balance: CAP, regenerated: 600 })
    // past the full regeneration time from zero, and far beyond: still the cap
    h.clock.advance(REGEN_SECONDS * 1000)
    for (const a of await seen()) expect(a).toMatchObject({ mana: CAP, balance: CAP, regenerated: 600 })
    h.clock.advance(10 * REGEN_SECONDS * 1000)
    const end = await seen()
    for (const a of end) expect(a).toMatchObject({ mana: CAP, balance: CAP, regenerated: 600 })
    expect(end[1]).toEqual(end[0])
    expect(end[2]).toEqual(end[0])
    expectBooksBalance(await accounts(0))
  })

  it('a node that was down while others transferred catches up and then shows the same accounts as of the same time', async () => {
    await h.stop(2)
    const receipts: Receipt[] = []
    for (let k = 0; k < 5; k++) {
      receipts.push(await accepted(0, transfer(alice, bob.did, 3 + k)))
      receipts.push(await accepted(1, transfer(bob, carol.did, 2 + k)))
      receipts.push(await accepted(1, transfer(bob, alice.did, 1)))
      h.clock.advance(1_000)
    }
    await h.restart(2)
    await h.waitConnected()
    const lastOf = (node: number): Receipt =>
      receipts
        .filter((r) => r.chain === `${h.nodes[node]!.did}/ledger`)
        .reduce((m, r) => (r.seq > m.seq ? r : m))
    await folded(lastOf(0))
    await folded(lastOf(1))
    const at = h.clock.now()
    const views = await Promise.all([0, 1, 2].map((i) => accounts(i, at)))
    expect(views[2]).toEqual(views[0])
    expect(views[1]).toEqual(views[0])
    // and as of a time in the middle of what node 2 missed
    const mid = Date.parse(receipts[7]!.ts)
    const middle = await Promise.all([0, 1, 2].map((i) => accounts(i, mid)))
    expect(middle[2]).toEqual(middle[0])
    expect(middle[1]).toEqual(middle[0])
    expect(middle[2]).not.toEqual(views[2])
    expectBooksBalance(views[2]!)
  })

  it('time rules: a ledger block going back in time folds as rejected everywhere; one too far ahead waits for the clock', async () => {
    const chain = rogueChain()
    const farOn = async (i: number, at: number): Promise<AccountView> => account(i, far.did, at)

    const t0 = h.clock.now()
    const first = op(10, t0)
    firstNonce = first.record.nonce
    const b0 = await writeRogue(t0, { ops: [first] })
    await folded({ cid: b0.cid.toString(), chain, seq: 0 })
    for (const i of [0, 1, 2]) expect(await farOn(i, t0)).toMatchObject({ sent: 10, balance: CAP - 10 })

    // seq 1 dated a second before seq 0
    const rejected0 = await Promise.all(
      [0, 1, 2].map((i) => metric(i, 'icn_ledger_blocks_rejected_total{code="LEDGER_TIME_BACKWARDS"}')),
    )
    const b1 = await writeRogue(t0 - 1_000, { ops: [op(20, t0)] })
    await folded({ cid: b1.cid.toString(), chain, seq: 1 })
    for (const i of [0, 1, 2]) {
      expect(await rejection(i, chain, 1)).toEqual(['LEDGER_TIME_BACKWARDS'])
      expect(await metric(i, 'icn_ledger_blocks_rejected_total{code="LEDGER_TIME_BACKWARDS"}')).toBe(
        rejected0[i]! + 1,
      )
      expect(await farOn(i, h.clock.now())).toMatchObject({ sent: 10 })
    }

    // seq 2 dated a minute beyond the skew: stored everywhere, folded nowhere until the clock gets there
    const ahead = h.clock.now() + SKEW_MS + 60_000
    const b2 = await writeRogue(ahead, { ops: [op(30, ahead)] })
    await h.waitForBlock(b2.cid) // (moves the clock a little, far less than a minute)
    expect(h.clock.now()).toBeLessThan(ahead - SKEW_MS)
    const lagged = async (i: number): Promise<number> =>
      (await h.node(i).state.lag()).find((l) => l.projection === 'economics.ledger')!.blocks
    for (const i of [0, 1, 2]) {
      await until(`node ${i} to see the block ahead`, async () => (await lagged(i)) === 1)
      expect(await metric(i, 'icn_projection_lag_blocks{projection="economics.ledger"}')).toBe(1)
      expect(await farOn(i, ahead)).toMatchObject({ sent: 10 })
    }
    // the clock reaches ahead - skew: it folds, the same on every node
    h.clock.advance(ahead - SKEW_MS - h.clock.now())
    await folded({ cid: b2.cid.toString(), chain, seq: 2 })
    for (const i of [0, 1, 2]) {
      expect(await lagged(i)).toBe(0)
      expect(await metric(i, 'icn_projection_lag_blocks{projection="economics.ledger"}')).toBe(0)
      expect(await farOn(i, ahead)).toMatchObject({ sent: 40, balance: expect.any(Number) })
    }
    const views = await Promise.all([0, 1, 2].map((i) => accounts(i, ahead)))
    expect(views[1]).toEqual(views[0])
    expect(views[2]).toEqual(views[0])
    expectBooksBalance(views[0]!)

    // a node's first ledger block dated before the genesis: rejected the same way
    const early = await writeRogue(HARNESS_EPOCH - 1, { ops: [op(1, t0)] }, rogue2)
    await folded({ cid: early.cid.toString(), chain: chainId(rogue2.did, 'ledger'), seq: 0 })
    for (const i of [0, 1, 2])
      expect(await rejection(i, chainId(rogue2.did, 'ledger'), 0)).toEqual(['LEDGER_TIME_BACKWARDS'])
  })

  it("a dishonest node's ledger block: each op judged on its own by the fold, the same on every node", async () => {
    const chain = rogueChain()
    // as late as the skew allows: not before the chain's last block (dated ahead of the clock before)
    const ts = h.clock.now() + SKEW_MS
    const before = await accounts(0, ts)
    const tampered = op(5, ts)
    tampered.record = { ...tampered.record, amount: 50 }
    const b = await writeRogue(ts, {
      ops: [
        // alice is homed at node 0: the rogue node cannot debit her
        { op: 'transfer', record: record(alice, far.did, 100, { expires: ts + 60_000 }) },
        tampered,
        op(5, ts, { nonce: firstNonce }), // a nonce far used in the rogue's first block
        { op: 'transfer', record: record(far, outsider.did, 5, { expires: ts + 60_000 }) },
        op(5, ts, { expires: ts - 1 }),
        { op: 'transfer', record: record(far, far.did, 5, { expires: ts + 60_000 }) },
        // more than far has: the fold does not check funds (only an honest home node does)
        op(CAP * 3, ts),
      ],
    })
    await folded({ cid: b.cid.toString(), chain, seq: rogueBlocks.length - 1 })
    for (const i of [0, 1, 2]) {
      expect(await outcomes(i, chain, rogueBlocks.length - 1)).toEqual([
        'WRONG_HOME',
        'INVALID_RECORD_SIGNATURE',
        'RECORD_REPLAYED',
        'UNKNOWN_ACCOUNT',
        'RECORD_EXPIRED',
        'SELF_TRANSFER',
        null,
      ])
    }
    const views = await Promise.all([0, 1, 2].map((i) => accounts(i, ts)))
    expect(views[1]).toEqual(views[0])
    expect(views[2]).toEqual(views[0])
    const was = byDid(before)
    const now = byDid(views[0]!)
    // only the overdraft moved anything: far went negative, alice got it; the books still balance
    expect(now.get(far.did)!.balance).toBe(was.get(far.did)!.balance - CAP * 3)
    expect(now.get(far.did)!.balance).toBeLessThan(0)
    expect(now.get(alice.did)!.balance).toBe(was.get(alice.did)!.balance + CAP * 3)
    for (const [did, a] of was) if (did !== far.did && did !== alice.did) expect(now.get(did)).toEqual(a)
    expectBooksBalance(views[0]!)
  })

  it('the same record sent many times at once, to its home and through the others, is taken once', async () => {
    const json = transfer(carol, bob.did, 3)
    const answers = await Promise.all(Array.from({ length: 12 }, (_, k) => post(k % 3, json)))
    expect(answers.filter((a) => a.status === 201)).toHaveLength(1)
    for (const a of answers.filter((x) => x.status !== 201))
      expect({ status: a.status, code: a.body.code }).toEqual({ status: 409, code: 'RECORD_REPLAYED' })
    await folded(answers.find((a) => a.status === 201)!.body as unknown as Receipt)
  })

  it('streams a transfer as a ledger:transfer event on /v1/events of another node', async () => {
    const ctl = new AbortController()
    const res = await fetch(`${h.node(2).apiUrl}/v1/events`, { signal: ctl.signal })
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/)
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let text = ''
    const reading = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read()
          if (done) return
          text += decoder.decode(value, { stream: true })
        }
      } catch {
        // aborted at the end
      }
    })()
    try {
      const r = await accepted(0, transfer(alice, carol.did, 7))
      const find = (): { type: string; [k: string]: unknown } | undefined =>
        text
          .split('\n\n')
          .filter((e) => e.includes('event: ledger:transfer'))
          .map((e) =>
            JSON.parse(
              e
                .split('\n')
                .find((l) => l.startsWith('data: '))!
                .slice(6),
            ),
          )
          .find((e) => e.cid === r.cid)
      await until('the ledger:transfer event on node 2', () => find() !== undefined, { clock: h.clock })
      expect(find()).toMatchObject({
        type: 'ledger:transfer',
        cid: r.cid,
        chain: r.chain,
        seq: r.seq,
        index: r.index,
        outcome: 'applied',
        from: alice.did,
        to: carol.did,
        amount: 7,
        ts: Date.parse(r.ts),
      })
    } finally {
      ctl.abort()
      await reading
    }
  })
  it('every node derived the same tables from the same blocks, and a reindex rebuilds them identically', async () => {
    // wait until every node holds and folded every ledger chain's head
    const heads = (await h.node(0).store.chainHeads()).filter((c) => c.chain.endsWith('/ledger'))
    expect(heads.length).toBeGreaterThanOrEqual(4) // the three nodes' and the rogue's
    for (const head of heads) await folded({ cid: head.cid.toString(), chain: head.chain, seq: head.seq })
    const dumps = await Promise.all([0, 1, 2].map((i) => h.node(i).state.dump()))
    expect(dumps[0]!.ledger_ops!.length).toBeGreaterThan(40)
    expect(dumpDifferences(dumps[0]!, dumps[1]!)).toEqual([])
    expect(dumpDifferences(dumps[0]!, dumps[2]!)).toEqual([])
    await h.node(1).state.reindex()
    expect(dumpDifferences(dumps[1]!, await h.node(1).state.dump())).toEqual([])
  })
})
