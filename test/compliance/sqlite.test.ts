import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { type BlockStore, chainId, SqliteBlockStore } from '../../src/dag/index.js'
import { Signer } from '../../src/identity/index.js'
import { blockStoreTests, chainOf } from './blockstore-suite.js'

const dirs = new Map<BlockStore, string>()

blockStoreTests('sqlite', {
  async setup(components) {
    const dir = mkdtempSync(join(tmpdir(), 'icn-sqlite-'))
    const store = new SqliteBlockStore({ path: join(dir, 'blocks.db') }, components)
    await store.open()
    dirs.set(store, dir)
    return store
  },
  async teardown(store) {
    await store.close()
    rmSync(dirs.get(store)!, { recursive: true, force: true })
    dirs.delete(store)
  },
})

describe('SqliteBlockStore: one process per data folder', () => {
  it('a second store on the same file fails STORE_LOCKED, the first keeps working; after close one opens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'icn-sqlite-lock-'))
    const path = join(dir, 'blocks.db')
    const signer = Signer.generate()
    const [b0, b1, b2] = chainOf(signer, chainId(signer.did, 'node'), 3)
    const first = new SqliteBlockStore({ path })
    const second = new SqliteBlockStore({ path })
    try {
      await first.open()
      await first.put(b0!)
      const err = await second.open().then(
        () => new Error('expected a failure'),
        (e: unknown) => e as Error,
      )
      expect(err).toMatchObject({ code: 'STORE_LOCKED' })
      expect(err.message).toContain(path)
      expect(err.message).toMatch(/another icn node/)
      await expect(second.ping()).rejects.toMatchObject({ code: 'STORE_CLOSED' })
      expect((await first.put(b1!)).status).toBe('stored')

      await first.close()
      await second.open()
      expect((await second.put(b2!)).status).toBe('stored')
      expect((await second.chainHead(chainId(signer.did, 'node')))?.seq).toBe(2)
    } finally {
      await first.close()
      await second.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
