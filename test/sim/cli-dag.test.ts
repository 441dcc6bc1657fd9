/**
 * `icn dag …` against real nodes: store and read values (small and chunked), CAR backup and restore into a
 * second node, a damaged CAR imports nothing, verify, pins and gc, and the errors a user sees when the input,
 * the key or the address is wrong.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type CliResult,
  freePort,
  initDataDir,
  killAll,
  type RunningNode,
  removeTempDirs,
  runCli,
  startNode,
  tempDir,
} from '../helpers/process.js'

interface Stats {
  blocks: number
  bytes: number
  chains: number
  pins: number
  evidence: number
}

let work: string
let dataDir: string
/** Started from `dataDir`, listening where its config.json says. */
let a: RunningNode
/** A fresh dev node: the restore target. */
let b: RunningNode

/** Arguments that point the CLI at a node explicitly. */
const at = (n: RunningNode): string[] => ['--api', n.info.api, '--api-key', n.info.apiKey]

async function stats(n: RunningNode): Promise<Stats> {
  return (await (await fetch(`${n.info.api}/v1/dag/stats`)).json()) as Stats
}

function ok(r: CliResult): CliResult {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
  return r
}

beforeAll(async () => {
  work = await tempDir()
  dataDir = join(work, 'a')
  const listen = `127.0.0.1:${await freePort()}`
  await initDataDir(dataDir, ['--api-listen', listen])
  ;[a, b] = await Promise.all([
    startNode(['--data-dir', dataDir], { apiListen: listen }),
    startNode(['--dev'], { env: { ICN_PASSPHRASE: undefined, TMPDIR: work } }),
  ])
})

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

describe('icn dag', () => {
  const small = { a: 1 }
  let smallCid: string
  let big: unknown[]
  let bigCid: string

  it('put prints the CID of a value; get prints the value', async () => {
    const put = ok(await runCli(['dag', 'put', ...at(a), '--value', JSON.stringify(small)]))
    smallCid = put.stdout.trim()
    expect(smallCid).toMatch(/^bafy[a-z2-7]+$/)
    const get = ok(await runCli(['dag', 'get', ...at(a), smallCid]))
    expect(JSON.parse(get.stdout)).toEqual(small)
  })

  it('a ~3 MB value from a file is stored in chunks and comes back equal', async () => {
    big = Array.from({ length: 30_000 }, (_, i) => ({ i, name: `member-${i}`, note: 'x'.repeat(64) }))
    const file = join(work, 'big.json')
    await writeFile(file, JSON.stringify(big))
    expect((await readFile(file)).length).toBeGreaterThan(2_900_000)
    const put = ok(await runCli(['dag', 'put', ...at(a), '--file', file, '--json'], { timeoutMs: 30_000 }))
    const r = JSON.parse(put.stdout) as { cid: string; seq: number; chunks: number }
    expect(r.chunks).toBeGreaterThan(0)
    expect(r.seq).toBe(1)
    bigCid = r.cid
    const get = ok(await runCli(['dag', 'get', ...at(a), bigCid, '--json'], { timeoutMs: 30_000 }))
    expect(JSON.parse(get.stdout)).toMatchObject({ cid: bigCid, author: a.info.did, seq: 1 })
    expect((JSON.parse(get.stdout) as { value: unknown }).value).toEqual(big)
  })

  it('export to a CAR; a truncated copy imports nothing; the whole file restores into a fresh node', async () => {
    const car = join(work, 'backup.car')
    const exp = ok(await runCli(['dag', 'export', ...at(a), '--out', car]))
    expect(exp.stdout).toContain(car)
    const bytes = await readFile(car)
    const truncated = join(work, 'truncated.car')
    // Cut inside the last block: every block before it is whole, and still none may be stored.
    await writeFile(truncated, bytes.subarray(0, bytes.length - 10))

    const before = await stats(b)
    expect(before.blocks).toBe(0)
    const bad = await runCli(['dag', 'import', ...at(b), truncated])
    expect(bad.code, bad.stderr).toBe(2)
    expect(bad.stderr).toContain('INVALID_CAR')
    expect(await stats(b)).toEqual(before)

    const imp = ok(await runCli(['dag', 'import', ...at(b), car, '--json']))
    const sourceStats = await stats(a)
    expect(JSON.parse(imp.stdout)).toMatchObject({ blocks: sourceStats.blocks, stored: sourceStats.blocks })
    expect(sourceStats.blocks).toBeGreaterThan(2)
    const statsB = ok(await runCli(['dag', 'stats', ...at(b), '--json']))
    expect((JSON.parse(statsB.stdout) as Stats).blocks).toBe(sourceStats.blocks)

    const getSmall = ok(await runCli(['dag', 'get', ...at(b), smallCid]))
    expect(JSON.parse(getSmall.stdout)).toEqual(small)
    const getBig = await fetch(`${b.info.api}/v1/dag/values/${bigCid}`)
    expect(((await getBig.json()) as { value: unknown }).value).toEqual(big)
  })

  it('verify checks every block and reports 0 bad', async () => {
    const r = ok(await runCli(['dag', 'verify', ...at(a)]))
    expect(r.stdout).toMatch(new RegExp(`^checked ${(await stats(a)).blocks} blocks, 0 bad$`, 'm'))
    const onB = await fetch(`${b.info.api}/v1/dag/verify`, {
      method: 'POST',
      headers: { authorization: `Bearer ${b.info.apiKey}` },
    })
    expect(await onB.json()).toEqual({ checked: (await stats(b)).blocks, bad: [] })
  })

  it('pins list and go; gc keeps every chain, foreign ones too', async () => {
    const total = (await stats(b)).blocks
    const add = ok(await runCli(['dag', 'pin', 'add', ...at(b), smallCid]))
    expect(add.stdout.trim()).toBe(`pinned ${smallCid}`)
    const ls = ok(await runCli(['dag', 'pin', 'ls', ...at(b)]))
    expect(ls.stdout.trim().split('\n')).toEqual([smallCid])

    // b's own chain is empty; a's chain (imported, as replication would bring it) is kept whole: its head is a root.
    const gc = ok(await runCli(['dag', 'gc', ...at(b), '--json']))
    expect(JSON.parse(gc.stdout)).toEqual({ removed: 0 })
    expect((await stats(b)).blocks).toBe(total)
    ok(await runCli(['dag', 'get', ...at(b), bigCid]))
    const kept = await fetch(`${b.info.api}/v1/dag/values/${smallCid}`)
    expect(((await kept.json()) as { value: unknown }).value).toEqual(small)

    const rm = ok(await runCli(['dag', 'pin', 'rm', ...at(b), smallCid]))
    expect(rm.stdout.trim()).toBe(`unpinned ${smallCid}`)
    expect(await (await fetch(`${b.info.api}/v1/dag/pins`)).json()).toEqual({ pins: [] })
    const gcAfter = ok(await runCli(['dag', 'gc', ...at(b)]))
    expect(gcAfter.stdout.trim()).toBe('removed 0 blocks')
    expect((await stats(b)).blocks).toBe(total)

    // gc on a node never removes its own chain.
    const before = (await stats(a)).blocks
    const gcA = await fetch(`${a.info.api}/v1/dag/gc`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.info.apiKey}` },
    })
    expect(await gcA.json()).toEqual({ removed: 0 })
    expect((await stats(a)).blocks).toBe(before)
  })

  it('finds the API address and key from --data-dir alone', async () => {
    const put = ok(
      await runCli(['dag', 'put', '--data-dir', dataDir, '--value', '{"via":"data-dir"}', '--json']),
    )
    const { cid, seq } = JSON.parse(put.stdout) as { cid: string; seq: number }
    expect(seq).toBe(2)
    const res = await fetch(`${a.info.api}/v1/dag/values/${cid}`)
    expect(await res.json()).toMatchObject({ value: { via: 'data-dir' }, author: a.info.did })
  })

  it('errors: bad JSON is a usage error; a wrong key, UNAUTHORIZED; no node, NODE_UNREACHABLE', async () => {
    const before = await stats(a)
    const [notJson, wrongKey, unreachable] = await Promise.all([
      runCli(['dag', 'put', ...at(a), '--value', 'not json']),
      runCli(['dag', 'put', '--api', a.info.api, '--api-key', 'wrong', '--value', '{"a":2}']),
      runCli(['dag', 'stats', '--api', 'http://127.0.0.1:1', '--api-key', 'k']),
    ])
    expect(notJson.code, notJson.stderr).toBe(2)
    expect(notJson.stderr).toMatch(/^icn: .*JSON/)
    expect(wrongKey.code, wrongKey.stderr).toBe(1)
    expect(wrongKey.stderr).toContain('icn: UNAUTHORIZED: ')
    expect(unreachable.code, unreachable.stderr).toBe(1)
    expect(unreachable.stderr).toContain('icn: NODE_UNREACHABLE: ')
    expect(notJson.stdout + wrongKey.stdout + unreachable.stdout).toBe('')
    expect(await stats(a)).toEqual(before)
  })
})
