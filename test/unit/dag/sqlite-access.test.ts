import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SqliteBlockStore, sqliteStatement } from '../../../src/dag/index.js'

describe('sqliteStatement', () => {
  it('binds by position when $1 … $n each appear once, in order', () => {
    expect(sqliteStatement('INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)')).toEqual({
      text: 'INSERT INTO t (a, b) VALUES (?, ?), (?, ?)',
      positional: 4,
    })
    expect(sqliteStatement('SELECT 1')).toEqual({ text: 'SELECT 1', positional: 0 })
  })

  it('keeps numbered parameters when one is used twice or out of order', () => {
    expect(sqliteStatement('SELECT $2 AS a, $1 AS b')).toEqual({ text: 'SELECT ?2 AS a, ?1 AS b' })
    expect(sqliteStatement('SELECT $1 AS a, $1 AS b')).toEqual({ text: 'SELECT ?1 AS a, ?1 AS b' })
  })

  it('leaves $n inside string literals and quoted identifiers alone', () => {
    expect(sqliteStatement(`SELECT '$1' AS "$2", $1 AS x`)).toEqual({
      text: `SELECT '$1' AS "$2", ? AS x`,
      positional: 1,
    })
  })
})

describe('the SQLite store’s SQL door binds the same values either way', () => {
  let dir: string
  let store: SqliteBlockStore
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'icn-sqlite-access-'))
    store = new SqliteBlockStore({ path: join(dir, 'store.sqlite') })
    await store.open()
  })
  afterAll(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('positional, reordered and repeated parameters, booleans and undefined', async () => {
    const q = store.sql()
    expect(await q.query('SELECT $1 AS a, $2 AS b, $3 AS c', ['x', true, undefined])).toEqual([
      { a: 'x', b: 1, c: null },
    ])
    expect(await q.query('SELECT $2 AS a, $1 AS b', [1, 2])).toEqual([{ a: 2, b: 1 }])
    expect(await q.query('SELECT $1 AS a, $1 AS b', [7])).toEqual([{ a: 7, b: 7 }])
    await q.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)')
    await q.query('INSERT INTO t (k, v) VALUES ($1, $2), ($3, $4)', ['a', 1, 'b', false])
    expect(await q.query('SELECT k, v FROM t ORDER BY k')).toEqual([
      { k: 'a', v: 1 },
      { k: 'b', v: 0 },
    ])
  })

  it('a statement given more values than it has parameters behaves as before (by name: the extra are unused)', async () => {
    const q = store.sql()
    expect(await q.query('SELECT $1 AS a', [1, 2])).toEqual([{ a: 1 }])
    // The same text with as many values as parameters goes by position again.
    expect(await q.query('SELECT $1 AS a', [3])).toEqual([{ a: 3 }])
    await expect(q.query('SELECT $1 AS a, $2 AS b', [1])).rejects.toMatchObject({ code: 'SQL_FAILED' })
  })
})
