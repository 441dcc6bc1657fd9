import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Gauge } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiClient, MAX_CONCURRENT_IMPORTS, MAX_IMPORT_BYTES, routes } from '../../src/api/index.js'
import { Signer } from '../../src/identity/index.js'
import { defaultOptions, IcnNode } from '../../src/node/index.js'
import { silentLogger } from '../../src/observability/index.js'
import { type ApiNode, startApiNode } from '../helpers/node.js'
import { type RawResponse, rawHttp } from '../helpers/raw-http.js'

/**
 * CAR imports hold bounded memory: garbage is refused after its first bytes (not after the whole body),
 * an oversized one before any of it is read, and at most MAX_CONCURRENT_IMPORTS run at once.
 */

const API_KEY = 'test-api-key-import-0123'

let api: ApiNode
let node: IcnNode
let port: number
let client: ApiClient
let car: Uint8Array

beforeAll(async () => {
  api = await startApiNode(API_KEY, 'icn-api-import-')
  ;({ node, port, client } = api)
  for (let i = 0; i < 3; i++) await client.call(routes.putValue, { body: { value: { i } } })
  car = new Uint8Array(await (await client.fetch(routes.exportCar)).arrayBuffer())
})

afterAll(async () => {
  await api?.stop()
})

/** Headers of an authenticated CAR upload that announces `length` bytes; the body is up to the caller. */
function uploadHead(length: number): string {
  return [
    'POST /v1/dag/import HTTP/1.1',
    'Host: 127.0.0.1',
    `Authorization: Bearer ${API_KEY}`,
    'Content-Type: application/vnd.ipld.car',
    `Content-Length: ${length}`,
    '',
    '',
  ].join('\r\n')
}

async function gauge(g: Gauge<never>): Promise<number> {
  return (await g.get()).values[0]?.value ?? 0
}

async function rejected(reason: string): Promise<number> {
  const m = await node.metrics.importsRejected.get()
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0
}

/** Wait for a condition on the node's metrics (a bounded poll, not a sleep-then-check). */
async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`timed out waiting for ${what}`)
}

const GARBAGE_LENGTH = 250 * 1024 * 1024
/** What the client sends of each garbage upload before it waits for the reply: 64 KiB of 250 MiB. */
const FIRST_BYTES = 64 * 1024

function garbage(fill: number): Buffer {
  return Buffer.concat([Buffer.from(uploadHead(GARBAGE_LENGTH)), Buffer.alloc(FIRST_BYTES, fill)])
}

function codeOf(res: RawResponse): string {
  return (JSON.parse(res.body) as { code: string }).code
}

describe('CAR imports hold bounded memory', () => {
  it('refuses a garbage upload after its first bytes, without waiting for the rest of the body', async () => {
    const before = await rejected('invalid')
    // The reply comes while 64 KiB of the announced 250 MiB have been sent: the server did not buffer the body.
    for (const fill of [7, 0xff, 0x00]) {
      const res = await rawHttp(port, garbage(fill))
      expect(res.status, res.body).toBe(400)
      const body = JSON.parse(res.body) as { code: string; message: string; details: { offset: number } }
      expect(body.code).toBe('INVALID_CAR')
      expect(body.message).toMatch(/not a CAR file/)
      expect(body.details.offset).toBeLessThan(FIRST_BYTES)
    }
    expect(await rejected('invalid')).toBe(before + 3)
    await until('no import running', async () => (await gauge(node.metrics.importsRunning)) === 0)
    expect(await gauge(node.metrics.importBufferedBytes)).toBe(0)
  })

  it('says an empty upload is empty, not a CAR file (what `icn dag import` of an empty file shows)', async () => {
    const err = await client.call(routes.importCar, { rawBody: new Uint8Array(0) }).then(
      () => undefined,
      (e: unknown) => e as { status: number; code: string; message: string },
    )
    expect(err).toMatchObject({ status: 400, code: 'INVALID_CAR' })
    expect(err!.message).toBe('CAR is empty (0 bytes): not a CAR file')
  })

  it('a client sending a large garbage body whole still gets the typed reply', async () => {
    // fetch keeps sending while the server has already answered: the rest is read and discarded, not held.
    const err = await client
      .call(routes.importCar, { rawBody: new Uint8Array(32 * 1024 * 1024).fill(7) })
      .then(
        () => undefined,
        (e: unknown) => e as { status: number; code: string },
      )
    expect(err).toMatchObject({ status: 400, code: 'INVALID_CAR' })
    await until('no import running', async () => (await gauge(node.metrics.importsRunning)) === 0)
    expect(await gauge(node.metrics.importBufferedBytes)).toBe(0)
  })

  it('refuses a valid CAR header followed by a section larger than any block', async () => {
    const header = car.subarray(0, car[0]! + 1)
    // A section length of 2^40 after a good header: framing, not the whole body, gives it away.
    const section = Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x20])
    const res = await rawHttp(port, Buffer.concat([Buffer.from(uploadHead(GARBAGE_LENGTH)), header, section]))
    expect(res.status, res.body).toBe(400)
    expect(codeOf(res)).toBe('INVALID_CAR')
    expect(JSON.parse(res.body).message).toMatch(/section 0 would be/)
  })

  it('six concurrent 250 MiB garbage imports are each refused with a typed code, holding almost nothing', async () => {
    const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => rawHttp(port, garbage(i + 1))))
    for (const res of replies) {
      expect([400, 503], res.body).toContain(res.status)
      expect(['INVALID_CAR', 'IMPORT_BUSY']).toContain(codeOf(res))
    }
    await until('no import running', async () => (await gauge(node.metrics.importsRunning)) === 0)
    expect(await gauge(node.metrics.importBufferedBytes)).toBe(0)
  })

  it('refuses an upload announcing more than the maximum before reading any of it (413)', async () => {
    const before = await rejected('too_large')
    const res = await rawHttp(port, uploadHead(MAX_IMPORT_BYTES + 1))
    expect(res.status, res.body).toBe(413)
    expect(codeOf(res)).toBe('PAYLOAD_TOO_LARGE')
    expect(await rejected('too_large')).toBe(before + 1)
  })

  it(`runs at most ${MAX_CONCURRENT_IMPORTS} imports at once: another is 503 IMPORT_BUSY; a good CAR imports after`, async () => {
    // Uploads that are valid so far and left unfinished hold their import slots.
    const held: Socket[] = []
    for (let i = 0; i < MAX_CONCURRENT_IMPORTS; i++) {
      const s = connect(port, '127.0.0.1')
      s.on('error', () => {})
      s.write(Buffer.concat([Buffer.from(uploadHead(car.length)), car.subarray(0, car.length - 10)]))
      held.push(s)
    }
    await until(
      'the slots taken and what was sent held',
      async () =>
        (await gauge(node.metrics.importsRunning)) === MAX_CONCURRENT_IMPORTS &&
        (await gauge(node.metrics.importBufferedBytes)) === MAX_CONCURRENT_IMPORTS * (car.length - 10),
    )
    const busyBefore = await rejected('busy')
    const res = await rawHttp(port, Buffer.concat([Buffer.from(uploadHead(car.length)), car]))
    expect(res.status, res.body).toBe(503)
    expect(codeOf(res)).toBe('IMPORT_BUSY')
    expect(res.headers['retry-after']).toMatch(/^\d+$/)
    expect(await rejected('busy')).toBe(busyBefore + 1)

    for (const s of held) s.destroy()
    await until('the slots freed', async () => (await gauge(node.metrics.importsRunning)) === 0)
    expect(await gauge(node.metrics.importBufferedBytes)).toBe(0)
    const r = await client.call(routes.importCar, { rawBody: car })
    expect(r.blocks).toBeGreaterThanOrEqual(3)
    expect(r.duplicates).toBe(r.blocks)
  })
})

describe('shutdown', () => {
  it('a request arriving while the server drains gets 503 SHUTTING_DOWN in the documented shape', async () => {
    const d = await mkdtemp(join(tmpdir(), 'icn-api-drain-'))
    const n = await IcnNode.create(
      { ...defaultOptions, dataDir: d, apiListen: '127.0.0.1:0' },
      { signer: Signer.generate(), apiKey: API_KEY, logger: silentLogger() },
    )
    try {
      await n.start()
      const p = Number(new URL(n.apiUrl).port)
      // An import in flight keeps the server draining (close waits for it); its connection stays usable.
      const a = connect(p, '127.0.0.1')
      let replies = ''
      a.on('data', (d: Buffer) => {
        replies += d.toString('latin1')
      })
      a.on('error', () => {})
      a.write(Buffer.concat([Buffer.from(uploadHead(car.length)), car.subarray(0, car.length - 10)]))
      await until('the import running', async () => (await gauge(n.metrics.importsRunning)) === 1)
      // An event stream ends when the close starts (preClose): then the server refuses new requests.
      const events = connect(p, '127.0.0.1')
      const ended = new Promise((resolve) => events.on('close', resolve))
      events.on('error', () => {})
      events.write('GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n')
      await new Promise((resolve) => events.once('data', resolve))
      const stopped = n.stop()
      await ended
      // The end of the upload, and a second request pipelined behind it on the same connection.
      a.write(
        Buffer.concat([
          car.subarray(car.length - 10),
          Buffer.from('GET /v1/node HTTP/1.1\r\nHost: x\r\n\r\n'),
        ]),
      )
      await new Promise((resolve) => a.on('close', resolve))
      await stopped
      const statuses = [...replies.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))
      expect(statuses, replies).toEqual([200, 503])
      const last = replies.slice(replies.lastIndexOf('\r\n\r\n') + 4)
      const body = JSON.parse(last) as { code: string; requestId: string }
      expect(body.code).toBe('SHUTTING_DOWN')
      expect(typeof body.requestId).toBe('string')
    } finally {
      await n.stop()
      await rm(d, { recursive: true, force: true })
    }
  })
})
