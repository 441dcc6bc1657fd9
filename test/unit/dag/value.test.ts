import { describe, expect, it } from 'vitest'
import {
  cidFor,
  createRawBlock,
  DAG_CBOR,
  decodeValue,
  encodeValue,
  MAX_VALUE_BYTES,
} from '../../../src/dag/index.js'

const record = cidFor(DAG_CBOR, new Uint8Array([1]))
const never = async (): Promise<Uint8Array> => {
  throw new Error('no chunk should be read')
}

describe('values', () => {
  it('round trips inline and chunked values', async () => {
    expect(await decodeValue(record, encodeValue({ a: [1, 'x'] }).body, never)).toEqual({ a: [1, 'x'] })
    const big = 'y'.repeat(3 * 1024 * 1024)
    const { body, chunks } = encodeValue(big)
    const byCid = new Map(chunks.map((c) => [c.cid.toString(), c.bytes]))
    expect(await decodeValue(record, body, async (c) => byCid.get(c.toString())!)).toBe(big)
  })

  it('refuses out-of-range sizes and chunk lists from a record before allocating anything', async () => {
    const part = createRawBlock(new Uint8Array(4)).cid
    for (const size of [-1, 1e300, 3.5, MAX_VALUE_BYTES + 1]) {
      await expect(decodeValue(record, { chunked: { size, parts: [part] } }, never)).rejects.toMatchObject({
        code: 'INCOMPLETE_VALUE',
      })
    }
    const parts = Array.from({ length: 65 }, () => part)
    await expect(decodeValue(record, { chunked: { size: 10, parts } }, never)).rejects.toMatchObject({
      code: 'INCOMPLETE_VALUE',
    })
  })

  it('refuses a value over the limit', () => {
    expect(() => encodeValue(new Uint8Array(MAX_VALUE_BYTES + 1))).toThrow(
      expect.objectContaining({ code: 'MALFORMED_BLOCK' }),
    )
  })
})
