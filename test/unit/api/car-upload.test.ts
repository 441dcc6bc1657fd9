import { Readable } from 'node:stream'
import { CarWriter } from '@ipld/car'
import { describe, expect, it } from 'vitest'
import { readCarUpload } from '../../../src/api/index.js'
import { createRawBlock } from '../../../src/dag/index.js'

async function carWith(n: number, size: number): Promise<Uint8Array> {
  const blocks = Array.from({ length: n }, (_, i) => createRawBlock(new Uint8Array(size).fill(i + 1)))
  const { writer, out } = CarWriter.create([blocks[0]!.cid])
  const collected = (async () => {
    const parts: Uint8Array[] = []
    for await (const p of out) parts.push(p)
    return new Uint8Array(Buffer.concat(parts))
  })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  return collected
}

/** The bytes as a stream of chunks of `size` bytes (1 exercises every boundary). */
function chunked(bytes: Uint8Array, size: number): Readable {
  const parts: Buffer[] = []
  for (let i = 0; i < bytes.length; i += size) parts.push(Buffer.from(bytes.subarray(i, i + size)))
  return Readable.from(parts, { objectMode: false })
}

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string; details?: unknown }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err, 'expected a failure').toBeDefined()
  return err as { code: string; message: string; details?: unknown }
}

describe('readCarUpload', () => {
  it('reads a CAR split at every byte boundary, and counts every byte it holds', async () => {
    const car = await carWith(3, 100)
    for (const size of [1, 2, 7, 64, car.length]) {
      let held = 0
      const out = await readCarUpload(chunked(car, size), { maxBytes: 1 << 20, onHeld: (n) => (held += n) })
      expect(Buffer.from(out).equals(Buffer.from(car)), `chunks of ${size}`).toBe(true)
      expect(held).toBe(car.length)
      // With a declared length, into one buffer of that size.
      const one = await readCarUpload(chunked(car, size), { maxBytes: 1 << 20, declaredLength: car.length })
      expect(Buffer.from(one).equals(Buffer.from(car)), `chunks of ${size}, declared`).toBe(true)
    }
  })

  it('refuses a CAR cut inside its header or a section', async () => {
    const car = await carWith(2, 50)
    for (const cut of [1, 5, car[0]! + 2, car.length - 1]) {
      const err = await failure(readCarUpload(chunked(car.subarray(0, cut), 3), { maxBytes: 1 << 20 }))
      expect(err.code, `cut at ${cut}`).toBe('INVALID_CAR')
      expect(err.message).toMatch(/truncated/)
    }
  })

  it('refuses garbage at once with the offset where it stopped being a CAR', async () => {
    const err = await failure(readCarUpload(chunked(Buffer.alloc(4096, 0xff), 4096), { maxBytes: 1 << 20 }))
    expect(err).toMatchObject({ code: 'INVALID_CAR', details: { offset: 7 } })
    const zero = await failure(readCarUpload(chunked(Buffer.alloc(10), 10), { maxBytes: 1 << 20 }))
    expect(zero.message).toMatch(/header would be 0 bytes/)
  })

  it('refuses more than maxBytes as soon as it is passed, and a declared length over it before reading', async () => {
    const car = await carWith(4, 200)
    const err = await failure(readCarUpload(chunked(car, 100), { maxBytes: 500 }))
    expect(err).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { limit: 500 } })
    let read = false
    const source = new Readable({
      read() {
        read = true
        this.push(null)
      },
    })
    const early = await failure(readCarUpload(source, { maxBytes: 500, declaredLength: 501 }))
    expect(early.code).toBe('PAYLOAD_TOO_LARGE')
    expect(read).toBe(false)
  })

  it('an empty body is "empty, not a CAR file"', async () => {
    const err = await failure(readCarUpload(chunked(new Uint8Array(0), 1), { maxBytes: 100 }))
    expect(err).toMatchObject({ code: 'INVALID_CAR', message: 'CAR is empty (0 bytes): not a CAR file' })
  })
})
