import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { recordToJson, signRecord } from '../../src/economics/index.js'
import { createGenesis, writeGenesisFile } from '../../src/federation/index.js'
import { Signer } from '../../src/identity/index.js'
import { defaultOptions, IcnNode } from '../../src/node/index.js'
import { silentLogger } from '../../src/observability/index.js'

let dir: string
let node: IcnNode
const members = Array.from({ length: 4 }, () => Signer.generate())

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-ledger-receipts-'))
  const signer = Signer.generate()
  const genesis = join(dir, 'genesis.car')
  await writeGenesisFile(
    genesis,
    createGenesis(signer, {
      name: 'receipts',
      members: members.map((m) => m.did),
      nodes: [signer.did],
      ts: Date.now() - 1_000,
    }),
  )
  node = await IcnNode.create(
    {
      ...defaultOptions,
      dataDir: dir,
      apiListen: '127.0.0.1:0',
      genesis,
      p2pListen: ['/ip4/127.0.0.1/tcp/0'],
    },
    { signer, apiKey: 'receipts-api-key-0123456789', logger: silentLogger() },
  )
  await node.start()
})

afterAll(async () => {
  await node?.stop()
  await rm(dir, { recursive: true, force: true })
})

async function json(path: string, init?: RequestInit): Promise<Record<string, unknown>> {
  const res = await fetch(`${node.apiUrl}${path}`, init)
  return { status: res.status, ...((await res.json()) as Record<string, unknown>) }
}

it('each receipt of concurrent transfers shows the accounts as GET ?at= the block time does', async () => {
  const federation = node.federation!.id
  const posts = Array.from({ length: 24 }, (_, i) => {
    const from = members[i % 4]!
    const record = signRecord(from, {
      kind: 'transfer',
      federation,
      member: from.did,
      to: members[(i + 1) % 4]!.did,
      amount: 1 + i,
      nonce: `receipt-nonce-${i}`,
      expires: Date.now() + 60_000,
    })
    return json('/v1/ledger/transfers', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(recordToJson(record)),
    })
  })
  const receipts = await Promise.all(posts)
  for (const r of receipts) expect(r.status).toBe(201)
  for (const r of receipts) {
    const at = encodeURIComponent(String(r.ts))
    for (const side of ['from', 'to'] as const) {
      const shown = r[side] as { did: string }
      const { status: _s, ...asOf } = await json(`/v1/accounts/${encodeURIComponent(shown.did)}?at=${at}`)
      expect(shown).toEqual(asOf)
    }
  }
})
