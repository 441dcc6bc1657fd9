/**
 * `icn dag reindex` on a real data folder: refused with STORE_LOCKED while the node runs on it; once stopped, it
 * rebuilds the derived state and reports it identical (exit 0), in text and JSON; a folder without an identity
 * fails NOT_INITIALIZED.
 */
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import {
  freePort,
  initDataDir,
  killAll,
  removeTempDirs,
  runCli,
  startNode,
  tempDir,
} from '../helpers/process.js'

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

it('icn dag reindex: STORE_LOCKED while the node runs, identical after it stopped, NOT_INITIALIZED on an empty folder', async () => {
  const work = await tempDir()
  const dataDir = join(work, 'n')
  const listen = `127.0.0.1:${await freePort()}`
  await initDataDir(dataDir, ['--api-listen', listen])
  const node = await startNode(['--data-dir', dataDir], { apiListen: listen })
  const put = await runCli(['dag', 'put', '--data-dir', dataDir, '--value', '{"n":1}'])
  expect(put.code, put.stderr).toBe(0)

  const locked = await runCli(['dag', 'reindex', '--data-dir', dataDir, '--json'])
  expect(locked.code).toBe(1)
  expect(locked.stderr).toMatch(/STORE_LOCKED/)

  expect((await node.stop()).code).toBe(0)
  const text = await runCli(['dag', 'reindex', '--data-dir', dataDir])
  expect(text.code, text.stderr).toBe(0)
  expect(text.stdout).toMatch(/^reindexed \d+ blocks in \d+ ms/)
  expect(text.stdout).toContain('every table came out identical')
  const json = await runCli(['dag', 'reindex', '--data-dir', dataDir, '--json'])
  expect(json.code, json.stderr).toBe(0)
  expect(JSON.parse(json.stdout)).toMatchObject({
    store: 'sqlite',
    identical: true,
    differing: [],
    tables: 2,
  })

  const empty = await runCli(['dag', 'reindex', '--data-dir', join(work, 'none')])
  expect(empty.code).toBe(1)
  expect(empty.stderr).toMatch(/NOT_INITIALIZED/)
  const bad = await runCli(['dag', 'reindex', '--data-dir', dataDir, '--store', 'mysql'])
  expect(bad.code).toBe(2)
})
