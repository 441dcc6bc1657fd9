/**
 * `icn node start` through bin/icn's code cache, as an operator meets it: a start that fails writes no cache
 * (its few functions would become the cache of every later start); the first start of a build that runs finds
 * no cache and writes one when it stops; the next start takes it and runs as before (answers, stores a value);
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off. The 'node running' log line says which, with the start-up time.
 */
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, afterEach, expect, it } from 'vitest'
import { waitFor } from '../helpers/federation.js'
import { killAll, type RunningNode, removeTempDirs, runCli, startNode, tempDir } from '../helpers/process.js'

afterEach(killAll)
afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

/** The fields of the node's 'node running' log line (stderr), once it is there. */
async function runningLine(node: RunningNode): Promise<{ codeCache?: string; uptimeMs: number }> {
  const line = await waitFor("the 'node running' log line", async () =>
    node
      .stderr()
      .split('\n')
      .find((l) => l.includes('"msg":"node running"')),
  )
  return JSON.parse(line) as { codeCache?: string; uptimeMs: number }
}

it('a failed start writes none, the first run writes the cache at its stop, the next takes it, and it can be turned off', async () => {
  const cacheDir = join(await tempDir('icn-code-cache-sim-'), 'cache')
  const env = { ICN_CODE_CACHE_DIR: cacheDir, ICN_LOG_LEVEL: 'info' }
  const caches = () => readdirSync(cacheDir).filter((f) => f.startsWith('node-') && f.endsWith('.v8cache'))

  const failed = await runCli(['node', 'start', '--data-dir', join(cacheDir, '..', 'no-such-node')], { env })
  expect(failed.code).not.toBe(0)
  expect(caches()).toEqual([])

  const first = await startNode(['--dev'], { env })
  const a = await runningLine(first)
  expect(a.codeCache).toBe('none')
  expect(a.uptimeMs).toBeGreaterThan(0)
  expect((await first.stop()).code).toBe(0)
  expect(caches().length).toBe(1)

  const second = await startNode(['--dev'], { env })
  expect((await runningLine(second)).codeCache).toBe('used')
  const res = await fetch(`${second.info.api}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${second.info.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value: { cached: true } }),
  })
  expect(res.status).toBe(201)
  expect((await second.stop()).code).toBe(0)

  const off = await startNode(['--dev'], { env: { ...env, NODE_DISABLE_COMPILE_CACHE: '1' } })
  expect((await runningLine(off)).codeCache).toBe('off')
  expect((await off.stop()).code).toBe(0)
})
