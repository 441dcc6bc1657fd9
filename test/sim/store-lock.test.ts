/**
 * One node identity holds its store alone: `icn node start` a second time on a data folder whose store is
 * PostgreSQL fails with STORE_LOCKED (and a non-zero exit), while the first keeps serving; once the first has
 * stopped, the folder starts again.
 */
import { afterAll, afterEach, expect, it } from 'vitest'
import { createTestDatabase } from '../helpers/pg.js'
import {
  initDataDir,
  killAll,
  removeTempDirs,
  runCli,
  startNode,
  TEST_PASSPHRASE,
  tempDir,
} from '../helpers/process.js'

afterEach(killAll)
afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

async function putValue(api: string, apiKey: string, value: unknown): Promise<number> {
  const res = await fetch(`${api}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value }),
  })
  return res.status
}

it('a second `icn node start --store postgres` on one data folder fails with STORE_LOCKED', async () => {
  const db = await createTestDatabase()
  try {
    const dir = await tempDir()
    await initDataDir(dir, ['--store', 'postgres', '--pg-url', db.url])
    const env = { ICN_PASSPHRASE: TEST_PASSPHRASE }
    const first = await startNode(['--data-dir', dir, '--store', 'postgres'], { env })
    expect(first.info.store).toBe('postgres')

    const second = await runCli(
      ['node', 'start', '--data-dir', dir, '--store', 'postgres', '--api-listen', '127.0.0.1:0', '--json'],
      { env, timeoutMs: 20_000 },
    )
    expect(second.code, second.stderr).not.toBe(0)
    expect(second.stdout).toBe('')
    expect(second.stderr).toContain('STORE_LOCKED')
    expect(second.stderr).toContain(first.info.did)
    expect(second.stderr).toMatch(/another icn node/)

    // the first is untouched: it still writes
    expect(await putValue(first.info.api, first.info.apiKey, { still: 'here' })).toBe(201)
    expect(first.proc.exitCode).toBe(null)
    expect((await first.stop()).code).toBe(0)

    // its lock went with it: the folder starts again, and its chain goes on
    const again = await startNode(['--data-dir', dir, '--store', 'postgres'], { env })
    expect(await putValue(again.info.api, again.info.apiKey, { again: true })).toBe(201)
    expect((await again.stop()).code).toBe(0)
  } finally {
    await db.drop()
  }
})
