import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type Block,
  type BlockStore,
  ChainWriter,
  type PutOptions,
  type PutResult,
  SqliteBlockStore,
  StoreUnavailableError,
} from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'

/** A real store whose putMany can be made to fail: after committing (a lost COMMIT reply), or held then failed. */
class FaultyStore {
  mode: 'ok' | 'commit-then-fail' | 'hold' = 'ok'
  puts = 0
  private release?: () => void

  constructor(readonly inner: SqliteBlockStore) {}

  /** Let a held putMany go on, to fail as an unreachable database does. */
  fail(): void {
    this.release?.()
  }

  get store(): BlockStore {
    return new Proxy(this.inner, {
      get: (target, prop, receiver) => {
        if (prop === 'putMany')
          return (blocks: Block[], options?: PutOptions) => this.putMany(blocks, options)
        const v = Reflect.get(target, prop, receiver)
        return typeof v === 'function' ? v.bind(target) : v
      },
    })
  }

  private async putMany(blocks: Block[], options?: PutOptions): Promise<PutResult[]> {
    this.puts++
    if (this.mode === 'commit-then-fail') {
      this.mode = 'ok'
      await this.inner.putMany(blocks, options)
      throw new StoreUnavailableError('database did not answer within 100 ms (put)')
    }
    if (this.mode === 'hold') {
      await new Promise<void>((resolve) => {
        this.release = resolve
      })
      this.mode = 'ok'
      throw new StoreUnavailableError('database did not answer within 100 ms (put)')
    }
    return this.inner.putMany(blocks, options)
  }
}

describe('ChainWriter', () => {
  let dir: string
  let inner: SqliteBlockStore
  let faulty: FaultyStore
  let writer: ChainWriter

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'icn-writer-'))
    inner = new SqliteBlockStore({ path: join(dir, 'db') })
    await inner.open()
    faulty = new FaultyStore(inner)
    writer = new ChainWriter({ name: 'node' }, { store: faulty.store, signer: Signer.generate() })
  })

  afterEach(async () => {
    await inner.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('after a commit whose outcome is unknown, reads its head again: no second block for that position', async () => {
    expect((await writer.appendValue('a')).seq).toBe(0)
    faulty.mode = 'commit-then-fail'
    await expect(writer.appendValue('b')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' })
    // 'b' was committed although the writer was told otherwise; the next append must follow it
    const c = await writer.appendValue('c')
    expect(c.seq).toBe(2)
    expect(await inner.evidence()).toEqual([])
    expect((await inner.chainHead(writer.chain))?.cid.equals(c.cid)).toBe(true)
    expect((await writer.currentHead())?.seq).toBe(2)
  })

  it('appends queued behind one that found the store unavailable fail with it, without trying', async () => {
    await writer.appendValue('first')
    faulty.mode = 'hold'
    const queued = ['x', 'y', 'z'].map((v) =>
      writer.appendValue(v).then(
        () => 'stored',
        (e: { code?: string }) => e.code,
      ),
    )
    while (faulty.puts < 2) await new Promise((r) => setImmediate(r))
    expect(faulty.puts).toBe(2) // the first of them is in the store; the others wait in the writer's queue
    faulty.fail()
    expect(await Promise.all(queued)).toEqual(['STORE_UNAVAILABLE', 'STORE_UNAVAILABLE', 'STORE_UNAVAILABLE'])
    expect(faulty.puts).toBe(2)
    // an append made after the failure tries again
    expect((await writer.appendValue('later')).seq).toBe(1)
    expect(faulty.puts).toBe(3)
  })

  it('follows blocks of its chain stored by other ways (a restored node syncing its own chain back)', async () => {
    // The same key writes two blocks elsewhere (the node before its data folder was lost) ...
    const signer = Signer.generate()
    const otherDir = mkdtempSync(join(tmpdir(), 'icn-writer-old-'))
    const old = new SqliteBlockStore({ path: join(otherDir, 'db') })
    await old.open()
    try {
      const before = new ChainWriter({ name: 'node' }, { store: old, signer })
      await before.appendValue('one')
      await before.appendValue('two')
      // ... and the restored writer has read its (empty) head before they arrive, as a starting node does.
      const restored = new ChainWriter({ name: 'node' }, { store: inner, signer })
      expect(await restored.currentHead()).toBeUndefined()
      const blocks = []
      for (const seq of [0, 1]) {
        const cid = await old.chainEntry(restored.chain, seq)
        blocks.push({ cid: cid!, bytes: await old.get(cid!) })
      }
      await inner.putMany(blocks, { source: 'sync' })
      expect((await restored.currentHead())?.seq).toBe(1)
      const next = await restored.appendValue('three')
      expect(next.seq).toBe(2)
      expect(await inner.evidence()).toEqual([])
      // Duplicates of older positions do not move the head back.
      await inner.putMany(blocks, { source: 'sync' })
      expect((await restored.currentHead())?.cid.equals(next.cid)).toBe(true)
    } finally {
      await old.close()
      rmSync(otherDir, { recursive: true, force: true })
    }
  })
})
