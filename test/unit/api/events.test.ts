/**
 * The client's reader of /v1/events (src/api/events.ts), against a server that writes Server-Sent Events in
 * chunks cut anywhere: every event arrives whole and in order, comments and frames without data are skipped, and an
 * error status rejects.
 */
import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { followEvents } from '../../../src/api/events.js'

let server: http.Server | undefined
afterEach(async () => {
  server?.closeAllConnections()
  await new Promise((r) => server?.close(r))
  server = undefined
})

async function serve(handler: http.RequestListener): Promise<string> {
  server = http.createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('followEvents', () => {
  it('hands over every event whole and in order, however the chunks are cut', async () => {
    const stream =
      ': hello\n\n' +
      'event: block\ndata: {"type":"block","cid":"b1"}\n\n' +
      'id: 7\n\n' +
      'data: {"type":"ledger:transfer","cid":"b2","index":3}\n\n'
    let release!: () => void
    const written = new Promise<void>((r) => {
      release = r
    })
    const url = await serve(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      // Cut in pieces of 7 bytes, each written on its own turn, so frames and lines span chunks.
      for (let i = 0; i < stream.length; i += 7) {
        res.write(stream.slice(i, i + 7))
        await new Promise((r) => setImmediate(r))
      }
      release()
    })
    const ac = new AbortController()
    const got: { event: Record<string, unknown>; at: number }[] = []
    const all = new Promise<void>((resolve) => {
      void followEvents(url, ac.signal, (event, at) => {
        got.push({ event, at })
        if (got.length === 2) resolve()
      })
    })
    await written
    await all
    ac.abort()
    expect(got.map((g) => g.event)).toEqual([
      { type: 'block', cid: 'b1' },
      { type: 'ledger:transfer', cid: 'b2', index: 3 },
    ])
    expect(got[0]!.at).toBeLessThanOrEqual(got[1]!.at)
  })

  it('rejects when the node answers with an error status', async () => {
    const url = await serve((_req, res) => res.writeHead(503).end())
    await expect(followEvents(url, new AbortController().signal, () => {})).rejects.toThrow(
      '/v1/events: HTTP 503',
    )
  })
})
