/**
 * `icn dag reindex` on a real data folder holding ledger blocks: a node process runs a federation with a member
 * homed at it, `icn mana transfer` moves mana (ledger blocks written and folded by the node), the node stops;
 * the reindex rebuilds the ledger tables from the blocks and reports every table identical (and without
 * `--genesis`, which the ledger needs, it refuses with GENESIS_REQUIRED instead of rebuilding nothing). A derived table
 * tampered with afterwards is reported as differing (exit 1) and rebuilt, so the next reindex is identical again.
 */
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, expect, it } from 'vitest'
import { createGenesis, writeGenesisFile } from '../../src/federation/index.js'
import { dataPaths, initDataDir, unlockIdentity } from '../../src/node/datadir.js'
import {
  type CliResult,
  freePort,
  killAll,
  removeTempDirs,
  runCli,
  startNode,
  TEST_PASSPHRASE,
  tempDir,
} from '../helpers/process.js'

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

function ok(r: CliResult): CliResult {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
  return r
}

interface ReindexJson {
  projections: string[]
  blocks: number
  tables: number
  rows: number
  identical: boolean
  differing: string[]
}

it('icn dag reindex on a node folder with ledger blocks: identical; a tampered ledger table: differing, exit 1, then rebuilt', async () => {
  const work = await tempDir('icn-ledger-reindex-')
  const dataDir = join(work, 'node')
  const init = await initDataDir({ dataDir, store: 'sqlite', apiListen: '127.0.0.1:0' }, TEST_PASSPHRASE, {
    N: 1024,
  })
  const founder = await unlockIdentity(dataDir, TEST_PASSPHRASE)
  const memberDir = join(work, 'alice')
  const member = JSON.parse(
    ok(await runCli(['member', 'new', '--dir', memberDir, '--home', init.did, '--json'])).stdout,
  ) as { did: string }
  const federation = createGenesis(founder, {
    name: 'reindex',
    members: [member.did],
    nodes: [init.did],
    homes: { [member.did]: init.did },
  })
  const genesis = join(work, 'genesis.car')
  await writeGenesisFile(genesis, federation)

  const node = await startNode([
    '--data-dir',
    dataDir,
    '--genesis',
    genesis,
    '--p2p-listen',
    `/ip4/127.0.0.1/tcp/${await freePort()}`,
  ])
  const api = node.info.api
  for (const [to, amount] of [
    ['treasury', '25'],
    [init.did, '40'],
    ['treasury', '5'],
  ] as const)
    ok(
      await runCli(['mana', 'transfer', '--api', api, '--member', memberDir, '--to', to, '--amount', amount]),
    )
  const balance = JSON.parse(
    ok(await runCli(['mana', 'balance', member.did, '--api', api, '--json'])).stdout,
  ) as {
    sent: number
  }
  expect(balance.sent).toBe(70)
  expect((await node.stop()).code).toBe(0)

  // Without --genesis: the federation is the genesis the node pinned in its store, so the ledger is rebuilt.
  const bare = JSON.parse(
    ok(await runCli(['dag', 'reindex', '--data-dir', dataDir, '--json'])).stdout,
  ) as ReindexJson
  expect(bare).toMatchObject({ projections: ['economics.ledger'], identical: true, tables: 8 })

  // With the genesis gone from the store (unpinned and collected), the ledger projection cannot be built:
  // refused (it would rebuild nothing and call it identical), nothing changed.
  const unpin = new Database(dataPaths(dataDir).sqlite)
  unpin.prepare('DELETE FROM pins').run()
  unpin.close()
  const noGenesis = await runCli(['dag', 'reindex', '--data-dir', dataDir, '--json'])
  expect(noGenesis.code, noGenesis.stdout).toBe(2)
  expect(noGenesis.stderr).toContain('icn: GENESIS_REQUIRED: ')
  expect(noGenesis.stderr).toContain('economics.ledger')
  expect(noGenesis.stdout).toBe('')

  const reindex = (): Promise<CliResult> =>
    runCli(['dag', 'reindex', '--data-dir', dataDir, '--genesis', genesis, '--json'])
  const first = JSON.parse(ok(await reindex()).stdout) as ReindexJson
  expect(first).toMatchObject({
    projections: ['economics.ledger'],
    identical: true,
    differing: [],
    tables: 8,
  })
  // The three transfers' blocks (one each: they came one at a time) at least.
  expect(first.blocks).toBeGreaterThanOrEqual(3)
  expect(first.rows).toBeGreaterThan(10)

  // Tamper with a derived table while the node is down: the rebuild differs from it, says so, and fixes it.
  const db = new Database(dataPaths(dataDir).sqlite)
  db.prepare("UPDATE ledger_accounts SET pool = pool + 1 WHERE did = 'treasury'").run()
  db.close()
  const tampered = await reindex()
  expect(tampered.code, tampered.stderr).toBe(1)
  expect(JSON.parse(tampered.stdout)).toMatchObject({ identical: false, differing: ['ledger_accounts'] })
  const text = await runCli(['dag', 'reindex', '--data-dir', dataDir, '--genesis', genesis])
  expect(text.code, text.stderr).toBe(0)
  expect(text.stdout).toContain('every table came out identical')
})
