/**
 * SIGKILL between a block's commit and its fold, and in the middle of a fold: after a restart on the same
 * store, every block is folded exactly once (the cursor is committed with the rows, so a fold either happened
 * with its cursor or not at all). A real child process (test/sim/fixtures/state-child.ts, run with tsx).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { type BlockStore, chainId, SqliteBlockStore } from '../../src/dag/index.js'
import { PostgresBlockStore } from '../../src/dag/postgres.js'
import { Signer } from '../../src/identity/index.js'
import { ProjectionRunner } from '../../src/state/index.js'
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js'
import { exitOf, REPO_ROOT, removeTempDirs, tempDir } from '../helpers/process.js'
import { valueProjection } from '../helpers/value-projection.js'

const CHILD = join(REPO_ROOT, 'test', 'sim', 'fixtures', 'state-child.ts')
const chain = chainId(Signer.fromSeed(createHash('sha256').update('state-crash').digest()).did, 'values')
const children = new Set<ChildProcess>()
const dbs: TestDatabase[] = []

afterEach(async () => {
  for (const c of children) c.kill('SIGKILL')
  await Promise.all([...children].map((c) => exitOf(c)))
  children.clear()
})
afterAll(async () => {
  await removeTempDirs()
  for (const db of dbs) await db.drop()
})

/** Run the child; SIGKILL it at the first stdout line `killWhen` accepts; resolves with the lines read. */
async function runAndKill(
  args: string[],
  killWhen: (line: Record<string, unknown>) => boolean,
): Promise<Record<string, unknown>[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ICN_LOG_LEVEL: 'warn' },
  })
  children.add(child)
  const lines: Record<string, unknown>[] = []
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  let buffer = ''
  let killed = false
  await new Promise<void>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      // Lines after the one that triggered the kill may arrive in the same chunk (the child runs on): they were
      // printed before the kill landed, but the caller asks for the lines up to the trigger.
      if (killed) return
      buffer += d
      for (;;) {
        const i = buffer.indexOf('\n')
        if (i < 0) break
        const line = JSON.parse(buffer.slice(0, i)) as Record<string, unknown>
        buffer = buffer.slice(i + 1)
        lines.push(line)
        if (killWhen(line)) {
          killed = true
          child.kill('SIGKILL')
          resolve()
          return
        }
      }
    })
    child.once('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child exited (${code}) before the kill: ${stderr}`))
    })
  })
  const exit = await exitOf(child)
  expect(exit.signal).toBe('SIGKILL')
  return lines
}

/** Restart on the store: a fresh runner catches up; check each of `n` blocks folded exactly once. */
async function expectFoldedOnce(store: BlockStore, n: number): Promise<void> {
  await store.open()
  const runner = new ProjectionRunner({ batchBlocks: 4 }, { store })
  runner.register(valueProjection())
  try {
    await runner.start()
    await runner.waitFor(chain, n - 1)
    const dump = await runner.dump()
    expect(dump.fixture_blocks!.map((r) => r.seq)).toEqual(Array.from({ length: n }, (_, i) => i))
    expect(dump.fixture_chains).toEqual([{ chain, blocks: n, total: n * (n + 1) }])
    expect(dump.fixture_totals).toEqual([{ k: 'all', blocks: n, total: n * (n + 1) }])
    expect(dump.state_cursors).toEqual([expect.objectContaining({ chain, seq: n - 1 })])
  } finally {
    await runner.stop()
    await store.close()
  }
}

describe.each(['sqlite', 'postgres'] as const)('SIGKILL and the projection cursor (%s)', (kind) => {
  async function target(): Promise<{ arg: string; store: () => BlockStore }> {
    if (kind === 'sqlite') {
      const path = join(await tempDir('icn-state-crash-'), 'store.sqlite')
      return { arg: path, store: () => new SqliteBlockStore({ path }) }
    }
    const db = await createTestDatabase()
    dbs.push(db)
    return { arg: db.url, store: () => new PostgresBlockStore({ url: db.url }) }
  }

  it('killed with blocks committed but not folded, and a fold transaction half written', async () => {
    const t = await target()
    // Block 5 is the second of the batch 4..7: block 4's rows are written in the open transaction when it hangs.
    const lines = await runAndKill([t.arg, 'hang', '12', '5'], (l) => l.hanging !== undefined)
    expect(lines).toEqual([{ committed: 12 }, { hanging: 5 }])
    await expectFoldedOnce(t.store(), 12)
  })

  it('killed at some point while blocks stream in and fold', async () => {
    const t = await target()
    const lines = await runAndKill([t.arg, 'stream', '40'], (l) => l.committed === 25)
    expect(lines.at(-1)).toEqual({ committed: 25 })
    // What was committed before the kill (at least 25 blocks) folds exactly once; the child wrote no more.
    const store = t.store()
    await store.open()
    const head = await store.chainHead(chain)
    await store.close()
    expect(head!.seq).toBeGreaterThanOrEqual(24)
    await expectFoldedOnce(store, head!.seq + 1)
  })
})
