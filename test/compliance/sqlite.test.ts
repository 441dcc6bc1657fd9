import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type BlockStore, SqliteBlockStore } from '../../src/dag/index.js'
import { blockStoreTests } from './blockstore-suite.js'

const dirs = new Map<BlockStore, string>()

blockStoreTests('sqlite', {
  async setup() {
    const dir = mkdtempSync(join(tmpdir(), 'icn-sqlite-'))
    const store = new SqliteBlockStore({ path: join(dir, 'blocks.db') })
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
