/**
 * `icn mana` input checks and exit statuses, in-process: the parsers refuse bad input with stable codes before any
 * request, and main() maps the node's ledger refusals (from a stand-in HTTP server answering as a node would) to
 * exit 1 or 2, keeping the node's code and message and adding a hint.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { atOption, parseAccountId, parseAmount } from '../../../src/cli/commands/mana.js'
import { main } from '../../../src/cli/main.js'
import { Signer } from '../../../src/identity/index.js'

const did = Signer.generate().did

describe('mana input', () => {
  it('parseAmount takes positive safe integers only, as INVALID_AMOUNT usage errors', () => {
    expect(parseAmount('1')).toBe(1)
    expect(parseAmount('9007199254740991')).toBe(Number.MAX_SAFE_INTEGER)
    for (const bad of [
      '0',
      '-1',
      '1.5',
      '1e3',
      'x',
      '',
      ' 5',
      '0x10',
      '9007199254740992',
      '99999999999999999',
    ])
      expect(() => parseAmount(bad), bad).toThrow(
        expect.objectContaining({
          code: 'INVALID_AMOUNT',
          exitCode: 2,
          message: expect.stringContaining('--amount'),
        }),
      )
  })

  it('atOption sends an ISO instant in UTC; a bad one is INVALID_INSTANT, exit 2', () => {
    expect(atOption(undefined)).toEqual({})
    expect(atOption('2026-12-01T13:00:00+01:00')).toEqual({ at: '2026-12-01T12:00:00.000Z' })
    expect(atOption('2026-12-01T12:00:00Z')).toEqual({ at: '2026-12-01T12:00:00.000Z' })
    for (const bad of ['garbage', 'yesterday', '', '2026-13-45T99:00:00Z'])
      expect(() => atOption(bad), bad).toThrow(
        expect.objectContaining({
          code: 'INVALID_INSTANT',
          exitCode: 2,
          message: expect.stringContaining('--at'),
        }),
      )
  })

  it('parseAccountId takes a did:key or `treasury`; anything else is INVALID_DID, exit 2', () => {
    expect(parseAccountId(did, '--to')).toBe(did)
    expect(parseAccountId('treasury', '--to')).toBe('treasury')
    for (const bad of ['garbage', 'treasur', 'did:key:z6Mk', `${did}x`, 'did:web:example.org'])
      expect(() => parseAccountId(bad, '--to'), bad).toThrow(
        expect.objectContaining({
          code: 'INVALID_DID',
          exitCode: 2,
          message: expect.stringContaining('--to'),
        }),
      )
  })
})

describe('mana exit statuses for the node refusals', () => {
  let server: Server
  let api: string
  /** What the stand-in node answers to GET /v1/accounts/:did: status and error code. */
  let answer: { status: number; code: string; message: string }
  let requests = 0

  beforeAll(async () => {
    server = createServer((_req, res) => {
      requests++
      res.writeHead(answer.status, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ code: answer.code, message: answer.message, requestId: 'r1' }))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    api = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve))
  })

  async function run(args: string[]): Promise<{ code: number; stderr: string }> {
    let stderr = ''
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr += String(chunk)
      return true
    })
    try {
      return { code: await main(args), stderr }
    } finally {
      spy.mockRestore()
    }
  }

  it.each([
    { status: 404, code: 'UNKNOWN_ACCOUNT', exit: 2, hint: '`icn mana accounts` lists them' },
    { status: 400, code: 'INVALID_INSTANT', exit: 2, hint: undefined },
    { status: 409, code: 'INSUFFICIENT_MANA', exit: 1, hint: 'Nothing was written' },
    { status: 403, code: 'NOT_A_MEMBER', exit: 1, hint: 'founding members' },
    { status: 404, code: 'NO_LEDGER', exit: 1, hint: 'runs without a federation' },
    { status: 503, code: 'HOME_UNREACHABLE', exit: 1, hint: 'Nothing was written' },
  ])('$code ($status): exit $exit, the code and message kept, a hint added', async (c) => {
    answer = { status: c.status, code: c.code, message: `the node says ${c.code}` }
    const r = await run(['mana', 'balance', did, '--api', api])
    expect(r.code).toBe(c.exit)
    expect(r.stderr).toContain(`icn: ${c.code}: the node says ${c.code}`)
    if (c.hint) expect(r.stderr).toContain(c.hint)
  })

  it('bad input is refused before any request', async () => {
    const before = requests
    const [a, b, c] = [
      await run(['mana', 'balance', 'garbage', '--api', api]),
      await run(['mana', 'accounts', '--at', 'garbage', '--api', api]),
      await run(['mana', 'balance', did, '--at', 'nope', '--api', api]),
    ]
    expect([a.code, b.code, c.code]).toEqual([2, 2, 2])
    expect(a.stderr).toContain('icn: INVALID_DID: ')
    expect(b.stderr).toContain('icn: INVALID_INSTANT: ')
    expect(requests).toBe(before)
  })
})
