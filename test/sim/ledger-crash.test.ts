/**
 * SIGKILL of a process whose Ledger is writing member transfers (test/sim/fixtures/ledger-child.ts, run with
 * tsx): killed with a ledger block committed and its fold half written, and at some point of a stream of group
 * commits. After a restart on the same store every ledger block is folded exactly once: the ledger_ops rows are
 * exactly the ops of the chain's blocks, the cursor is at the head, the books balance, a fresh reindex gives
 * identical tables, the records written before the kill stay spent (replays refused) and the chain goes on.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { decodeSignedBlock } from '../../src/dag/index.js'
import type { LedgerOp, SignedRecord, TransferFields } from '../../src/economics/index.js'
import { dumpDifferences } from '../../src/state/index.js'
import {
  brokenBooks,
  LEDGER_T0,
  LedgerNode,
  ledgerChains,
  ledgerWorld,
  ManualClock,
  RecordMaker,
  type StoreTarget,
} from '../helpers/ledger-stack.js'
import { createTestDatabase, type TestDatabase } from '../helpers/pg.js'
import { exitOf, REPO_ROOT, removeTempDirs, tempDir } from '../helpers/process.js'

const CHILD = join(REPO_ROOT, 'test', 'sim', 'fixtures', 'ledger-child.ts')
// The child's world (same seed: same identities, members and genesis).
const world = ledgerWorld({ seed: 'ledger-crash', nodes: 2, membersPerNode: 2 })
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
      buffer += d
      while (!killed) {
        const i = buffer.indexOf('\n')
        if (i < 0) break
        const line = JSON.parse(buffer.slice(0, i)) as Record<string, unknown>
        buffer = buffer.slice(i + 1)
        lines.push(line)
        if (killWhen(line)) {
          killed = true
          child.kill('SIGKILL')
          resolve()
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

/**
 * Restart node 0 on the store and check that every block of its ledger chain folded exactly once; returns the
 * chain's head seq and how many ops its blocks hold.
 */
async function expectFoldedOnce(target: StoreTarget): Promise<{ head: number; ops: number }> {
  // Just after the child's last block time (it starts at T0 + 1 s and moves 100 ms a round): no record expired.
  const clock = new ManualClock(LEDGER_T0 + 10_000)
  const node = new LedgerNode(world, 0, target, clock, { batchBlocks: 4 })
  await node.start()
  try {
    await node.caughtUp()
    const chains = await ledgerChains(node.store!)
    const blocks = chains.get(node.chain)!
    expect([...chains.keys()]).toEqual([node.chain])
    const ops = blocks.flatMap((b, seq) =>
      (decodeSignedBlock(b.bytes).body as { ops: LedgerOp[] }).ops.map((op, idx) => ({ seq, idx, op })),
    )
    const dump = await node.dump()
    // One ledger_ops row per op of every block, in order, and every one applied (the child's Ledger checked them).
    expect(dump.ledger_ops!.map((r) => [r.seq, r.idx, r.outcome])).toEqual(
      ops.map((o) => [o.seq, o.idx, 'applied']),
    )
    expect(dump.ledger_chains).toEqual([
      { chain: node.chain, seq: blocks.length - 1, ts: decodeSignedBlock(blocks.at(-1)!.bytes).ts },
    ])
    expect(dump.state_cursors).toEqual([
      expect.objectContaining({
        chain: node.chain,
        seq: blocks.length - 1,
        cid: blocks.at(-1)!.cid.toString(),
      }),
    ])
    expect(dump.state_rejections).toEqual([])
    const transfers = ops.filter((o) => o.op.op === 'transfer')
    expect(dump.ledger_nonces).toHaveLength(transfers.length)
    const views = await node.ledger!.accounts(clock.now())
    expect(brokenBooks(views)).toEqual([])
    expect(views.reduce((s, v) => s + v.sent, 0)).toBe(
      transfers.reduce((s, o) => s + (o.op as { record: { amount: number } }).record.amount, 0),
    )

    // A fresh rebuild from the blocks gives the same tables.
    await node.runner!.reindex()
    expect(dumpDifferences(dump, await node.dump())).toEqual([])

    // What was written before the kill stays spent; the chain goes on from its head.
    const last = transfers.at(-1)!.op as { record: SignedRecord<TransferFields> }
    await expect(node.ledger!.transfer(last.record)).rejects.toMatchObject({ code: 'RECORD_REPLAYED' })
    const more = await node.ledger!.transfer(
      new RecordMaker(world, clock, 'after').transfer(0, 'treasury', 1),
    )
    expect(more.seq).toBe(blocks.length)
    return { head: blocks.length - 1, ops: ops.length }
  } finally {
    await node.stop()
  }
}

describe.each(['sqlite', 'postgres'] as const)('SIGKILL and the ledger (%s)', (kind) => {
  async function target(): Promise<{ arg: string; target: StoreTarget }> {
    if (kind === 'sqlite') {
      const path = join(await tempDir('icn-ledger-crash-'), 'store.sqlite')
      return { arg: path, target: { kind, path } }
    }
    const db = await createTestDatabase()
    dbs.push(db)
    return { arg: db.url, target: { kind, url: db.url } }
  }

  it('killed with a ledger block committed and its fold half written', async () => {
    const t = await target()
    const lines = await runAndKill([t.arg, 'hang', '20', '7'], (l) => l.hanging !== undefined)
    expect(lines.at(-1)).toEqual({ hanging: 7 })
    expect(lines.filter((l) => l.applied !== undefined)).toHaveLength(7)
    // Block 7 was committed before its fold began, so it is there to fold on restart.
    expect(await expectFoldedOnce(t.target)).toEqual({ head: 7, ops: 8 })
  })

  it('killed at some point of a stream of group commits', async () => {
    const t = await target()
    const lines = await runAndKill([t.arg, 'stream', '120'], (l) => (l.applied as number) >= 40)
    expect(lines.at(-1)).toMatchObject({ applied: 40 })
    // Every transfer the child was answered for is there and folded once (and maybe some it was not answered for).
    const { head, ops } = await expectFoldedOnce(t.target)
    expect(ops).toBeGreaterThanOrEqual(40)
    // Group commits: blocks of several ops.
    expect(head + 1).toBeLessThan(ops)
  })
})
