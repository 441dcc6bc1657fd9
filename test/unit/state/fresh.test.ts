import { describe, expect, it } from 'vitest'
import { createRawBlock } from '../../../src/dag/index.js'
import { FreshBlocks } from '../../../src/state/fresh.js'

const blk = (n: number) => createRawBlock(new Uint8Array([n]))

describe('FreshBlocks', () => {
  it('gives consecutive blocks from a held seq up to a limit, stopping at a gap; nothing for a seq not held', () => {
    const f = new FreshBlocks()
    for (const seq of [3, 4, 5, 7]) f.keep('c', seq, blk(seq))
    expect(f.range('c', 3, 10)?.map((b) => b.bytes[0])).toEqual([3, 4, 5])
    expect(f.range('c', 3, 2)?.map((b) => b.bytes[0])).toEqual([3, 4])
    expect(f.range('c', 2, 10)).toBeUndefined()
    expect(f.range('other', 3, 10)).toBeUndefined()
  })

  it('forgets what every projection is past, and everything at once past its bound', () => {
    const f = new FreshBlocks(4)
    for (const seq of [0, 1, 2]) f.keep('c', seq, blk(seq))
    f.forgetUpTo('c', 1)
    expect(f.size).toBe(1)
    expect(f.range('c', 0, 10)).toBeUndefined()
    expect(f.range('c', 2, 10)?.length).toBe(1)
    for (const seq of [3, 4, 5]) f.keep('c', seq, blk(seq))
    expect(f.size).toBe(4)
    f.keep('c', 6, blk(6)) // a fifth clears the four before it
    expect(f.size).toBe(1)
    expect(f.range('c', 6, 10)?.length).toBe(1)
    expect(f.range('c', 2, 10)).toBeUndefined()
  })
})
