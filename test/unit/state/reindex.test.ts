/** reindexDataDir (`icn dag reindex`) on a data folder's SQLite store, with fixture projections. */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, expect, it } from 'vitest'
import { reindexDataDir } from '../../../src/cli/reindex.js'
import { chainId, SqliteBlockStore } from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'
import { dataPaths, initDataDir, readDid } from '../../../src/node/index.js'
import { dumpDifferences, type Projection } from '../../../src/state/index.js'
import { fixtureChain, valueProjection } from '../../helpers/value-projection.js'

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function folderWithBlocks(n: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'icn-reindex-'))
  dirs.push(dir)
  await initDataDir({ dataDir: dir, store: 'sqlite', apiListen: '127.0.0.1:0' }, 'reindex-test-pass', {
    N: 1024,
  })
  const store = new SqliteBlockStore({ path: dataPaths(dir).sqlite })
  await store.open()
  const s = Signer.generate()
  await store.putMany(
    fixtureChain(
      s,
      chainId(s.did, 'values'),
      Array.from({ length: n }, (_, i) => ({ n: i })),
    ),
  )
  await store.close()
  return dir
}

it('rebuilds the fixture tables identically and reports blocks, rate and rows', async () => {
  const dir = await folderWithBlocks(30)
  const progress: number[] = []
  const r = await reindexDataDir({ dataDir: dir, projections: () => [valueProjection()] }, (p) =>
    progress.push(p.blocks),
  )
  expect(r).toMatchObject({ store: 'sqlite', projections: ['fixture.values'], blocks: 30, identical: true })
  expect(r.differing).toEqual([])
  // fixture_chains 1 + fixture_blocks 29 (13 is rejected) + fixture_totals 1 + state_cursors 1 + state_rejections 1
  expect(r.rows).toBe(33)
  expect(progress.at(-1)).toBe(30)
  expect(await readDid(dir)).toMatch(/^did:key:/)
})

it('a fold that depends on something besides the blocks comes out different, and says which table', async () => {
  const dir = await folderWithBlocks(3)
  let run = 0
  const base = valueProjection()
  const impure: Projection = {
    ...base,
    // Seeds the total with how many times init ran: not a function of the blocks.
    async init(tx) {
      run++
      await tx.query('INSERT INTO fixture_totals (k, blocks, total) VALUES ($1, 0, $2)', ['all', run])
    },
  }
  const r = await reindexDataDir({ dataDir: dir, projections: () => [impure] })
  expect(r.identical).toBe(false)
  expect(r.differing).toEqual(['fixture_totals'])
})

it('dumpDifferences compares rows canonically: key order does not matter, bytes compare by value', () => {
  const a = { t: [{ a: 1, b: Buffer.from([1, 2]) }], u: [] }
  const b = { t: [{ b: new Uint8Array([1, 2]), a: 1 }], u: [] }
  expect(dumpDifferences(a, b)).toEqual([])
  expect(dumpDifferences(a, { ...b, u: [{ x: 1 }] })).toEqual(['u'])
  expect(dumpDifferences(a, { t: a.t })).toEqual(['u'])
})
