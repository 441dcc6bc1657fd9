import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  type AccountState,
  applyOp,
  holdId,
  type LedgerOp,
  type LedgerParams,
  type LedgerView,
  manaAt,
  signRecord,
  TREASURY,
} from '../../../src/economics/index.js'
import { Signer } from '../../../src/identity/index.js'

const params: LedgerParams = {
  manaCap: 1_000,
  manaRegenSeconds: 100,
  settlementFeeBps: 250,
  ledgerSkewMs: 30_000,
  recordMaxTtlMs: 60_000,
}
const FED = 'bafyfederation'
const T0 = 1_700_000_000_000
const nodeA = Signer.generate().did
const nodeB = Signer.generate().did
const alice = Signer.generate()
const bob = Signer.generate()
const carol = Signer.generate()

function account(did: string, kind: AccountState['kind'], home: string, mana = 0, pool = 0): AccountState {
  return {
    did,
    kind,
    home,
    mana,
    manaTs: T0,
    pool,
    held: 0,
    allocated: mana + pool,
    regenerated: 0,
    received: 0,
    sent: 0,
    burned: 0,
  }
}

function accounts(): Map<string, AccountState> {
  return new Map(
    [
      account(alice.did, 'member', nodeA, 500),
      account(bob.did, 'member', nodeB, 500),
      account(carol.did, 'member', nodeA, 0),
      account(nodeA, 'node', nodeA),
      account(nodeB, 'node', nodeB),
      account(TREASURY, 'treasury', nodeA, 0, 100),
    ].map((a) => [a.did, a]),
  )
}

function view(
  shared: Map<string, AccountState>,
  node: string,
  ts: number,
  nonces = new Set<string>(),
): LedgerView {
  return {
    federation: FED,
    params,
    chain: `${node}/ledger`,
    node,
    ts,
    accounts: shared,
    holds: new Map(),
    nonces,
  }
}

let n = 0
const nonce = () => `nonce-${String(++n).padStart(4, '0')}`
const transfer = (
  s: Signer,
  to: string,
  amount: number,
  ts: number,
  extra: Partial<{ nonce: string; expires: number; federation: string }> = {},
): LedgerOp => ({
  op: 'transfer',
  record: signRecord(s, {
    kind: 'transfer',
    federation: extra.federation ?? FED,
    member: s.did,
    to,
    amount,
    nonce: extra.nonce ?? nonce(),
    expires: extra.expires ?? ts + 10_000,
  }),
})
const strict = { checkSignatures: true, checkFunds: true }

function books(all: Map<string, AccountState>, t: number) {
  let received = 0
  let sent = 0
  for (const a of all.values()) {
    const mana = manaAt(params, a, t)
    const balance = mana + a.pool
    const regenerated = a.regenerated + (mana - a.mana)
    expect(balance + a.held).toBe(a.allocated + regenerated + a.received - a.sent - a.burned)
    received += a.received
    sent += a.sent
  }
  expect(received).toBe(sent)
}

describe('ledger rules', () => {
  it('regenerates linearly to the cap and stops there', () => {
    const a = { kind: 'member' as const, mana: 0, manaTs: T0 }
    expect(manaAt(params, a, T0)).toBe(0)
    expect(manaAt(params, a, T0 + 10_000)).toBe(100) // a tenth of regen time: a tenth of the cap
    expect(manaAt(params, a, T0 + 99_999)).toBe(999) // floor
    expect(manaAt(params, a, T0 + 100_000)).toBe(1_000)
    expect(manaAt(params, a, T0 + 10_000_000)).toBe(1_000)
    expect(manaAt(params, { ...a, mana: 1_500 }, T0 + 10_000)).toBe(1_500) // above the cap (allocation): no regen
    expect(manaAt(params, { kind: 'node', mana: 0, manaTs: T0 }, T0 + 1e9)).toBe(0) // nodes do not regenerate
  })

  it('moves a transfer across homes: manabar first, then credit', () => {
    const all = accounts()
    const t = T0 + 1_000
    applyOp(view(all, nodeA, t), transfer(alice, bob.did, 200, t), strict)
    expect(all.get(alice.did)).toMatchObject({ mana: 310, pool: 0, sent: 200, regenerated: 10 })
    expect(all.get(bob.did)).toMatchObject({ mana: 500, pool: 200, received: 200 })
    // bob pays 600 at t2: his manabar (regenerated to 520) first, then 80 of credit
    const t2 = T0 + 2_000
    applyOp(view(all, nodeB, t2), transfer(bob, carol.did, 600, t2), strict)
    expect(all.get(bob.did)).toMatchObject({ mana: 0, pool: 120, sent: 600, regenerated: 20 })
    books(all, t2 + 5_000)
  })

  it('refuses bad records with typed errors and changes nothing', () => {
    const all = accounts()
    const t = T0 + 1_000
    const before = structuredClone([...all.values()])
    const used = transfer(alice, bob.did, 1, t)
    const nonces = new Set<string>()
    applyOp(view(all, nodeA, t, nonces), used, strict)
    const after = structuredClone([...all.values()])
    const stranger = Signer.generate()
    const bad: [string, LedgerOp, string][] = [
      ['replay', used, 'RECORD_REPLAYED'],
      ['expired', transfer(alice, bob.did, 1, t, { expires: t - 1 }), 'RECORD_EXPIRED'],
      ['too long', transfer(alice, bob.did, 1, t, { expires: t + 60_001 }), 'RECORD_TTL_TOO_LONG'],
      ['other federation', transfer(alice, bob.did, 1, t, { federation: 'bafyother' }), 'WRONG_FEDERATION'],
      ['non-member', transfer(stranger, bob.did, 1, t), 'NOT_A_MEMBER'],
      ['homed elsewhere', transfer(bob, alice.did, 1, t), 'WRONG_HOME'],
      ['unknown payee', transfer(alice, stranger.did, 1, t), 'UNKNOWN_ACCOUNT'],
      ['self', transfer(alice, alice.did, 1, t), 'SELF_TRANSFER'],
      ['too much', transfer(alice, bob.did, 10_000, t), 'INSUFFICIENT_MANA'],
    ]
    const forged = transfer(alice, bob.did, 1, t) as Extract<LedgerOp, { op: 'transfer' }>
    bad.push([
      'bad signature',
      { op: 'transfer', record: { ...forged.record, amount: 2 } },
      'INVALID_RECORD_SIGNATURE',
    ])
    for (const [what, op, code] of bad) {
      expect(() => applyOp(view(all, nodeA, t, nonces), op, strict), what).toThrow(
        expect.objectContaining({ code }),
      )
    }
    expect([...all.values()]).toEqual(after)
    expect(after).not.toEqual(before)
  })

  it('holds, releases and settles with a fee to the treasury', () => {
    const all = accounts()
    const t = T0
    const v = view(all, nodeA, t)
    const hold = signRecord(alice, {
      kind: 'hold',
      federation: FED,
      member: alice.did,
      amount: 400,
      purpose: 'job',
      nonce: nonce(),
      expires: t + 1_000,
    })
    applyOp(v, { op: 'hold', record: hold }, strict)
    expect(all.get(alice.did)).toMatchObject({ mana: 100, held: 400 })
    const id = holdId(alice.did, hold.nonce)
    expect(() => applyOp(v, { op: 'settle', hold: id, to: bob.did, amount: 401 }, strict)).toThrow(
      expect.objectContaining({ code: 'INVALID_AMOUNT' }),
    )
    applyOp(v, { op: 'settle', hold: id, to: bob.did, amount: 200 }, strict)
    expect(all.get(alice.did)).toMatchObject({ held: 0, sent: 200, pool: 200 })
    expect(all.get(bob.did)).toMatchObject({ received: 195 })
    expect(all.get(TREASURY)).toMatchObject({ received: 5 })
    expect(() => applyOp(v, { op: 'release', hold: id }, strict)).toThrow(
      expect.objectContaining({ code: 'HOLD_NOT_FOUND' }),
    )
    expect(() => applyOp(view(all, nodeB, t), { op: 'release', hold: id }, strict)).toThrow(
      expect.objectContaining({ code: 'HOLD_NOT_FOUND' }),
    )
    books(all, t)
  })

  it('keeps the books over random schedules (conservation, no overdraft)', () => {
    const members = [alice, bob, carol]
    const payees = [alice.did, bob.did, carol.did, nodeA, nodeB, TREASURY]
    const step = fc.record({
      kind: fc.constantFrom('transfer', 'hold', 'release', 'settle', 'replay'),
      who: fc.nat(2),
      to: fc.nat(5),
      amount: fc.integer({ min: 1, max: 700 }),
      dt: fc.integer({ min: 0, max: 20_000 }),
      part: fc.integer({ min: 0, max: 100 }),
    })
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const all = accounts()
        const nonces = new Set<string>()
        const holds = new Map()
        const open: { id: string; home: string; amount: number }[] = []
        let last: LedgerOp | undefined
        let t = T0
        for (const s of steps) {
          t += s.dt
          const m = members[s.who]!
          const home = all.get(m.did)!.home
          const v: LedgerView = { ...view(all, home, t, nonces), holds }
          let op: LedgerOp | undefined
          if (s.kind === 'transfer') op = transfer(m, payees[s.to]!, s.amount, t)
          else if (s.kind === 'hold') {
            const rec = signRecord(m, {
              kind: 'hold',
              federation: FED,
              member: m.did,
              amount: s.amount,
              purpose: 'p',
              nonce: nonce(),
              expires: t + 1,
            })
            op = { op: 'hold', record: rec }
          } else if (s.kind === 'replay') op = last
          else if (open.length > 0) {
            const h = open.shift()!
            v.chain = `${h.home}/ledger`
            v.node = h.home
            op =
              s.kind === 'release'
                ? { op: 'release', hold: h.id }
                : {
                    op: 'settle',
                    hold: h.id,
                    to: payees[s.to]!,
                    amount: Math.floor((h.amount * s.part) / 100),
                  }
          }
          if (!op) continue
          try {
            const r = applyOp(v, op, strict)
            expect(s.kind, 'a replayed record must be refused').not.toBe('replay')
            if (op.op === 'hold') open.push({ id: r.hold!.id, home, amount: op.record.amount })
            if (op.op === 'transfer' || op.op === 'hold') {
              last = op
            }
          } catch (err) {
            const code = (err as { code?: string }).code
            expect([
              'INSUFFICIENT_MANA',
              'RECORD_EXPIRED',
              'RECORD_REPLAYED',
              'SELF_TRANSFER',
              'HOLD_NOT_FOUND',
              'WRONG_HOME',
            ]).toContain(code)
            if (s.kind === 'replay')
              expect(['RECORD_REPLAYED', 'RECORD_EXPIRED', 'WRONG_HOME']).toContain(code)
          }
          books(all, t)
          for (const a of all.values()) expect(manaAt(params, a, t) + a.pool).toBeGreaterThanOrEqual(0)
        }
      }),
      { numRuns: 200, seed: 20261201 },
    )
  })
})
