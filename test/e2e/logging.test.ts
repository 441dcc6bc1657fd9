import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { expect, it } from 'vitest'
import { Signer } from '../../src/identity/index.js'
import { defaultOptions, IcnNode } from '../../src/node/index.js'
import { createLogger } from '../../src/observability/index.js'

async function waitUntil(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r))
}

it('every log line a request causes carries its request id, once, and fields do not leak between lines', async () => {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean))
      done()
    },
  })
  const dir = await mkdtemp(join(tmpdir(), 'icn-log-'))
  const node = await IcnNode.create(
    { ...defaultOptions, dataDir: dir, apiListen: '127.0.0.1:0', logLevel: 'debug' },
    { signer: Signer.generate(), apiKey: 'k', logger: createLogger({ level: 'debug', destination: sink }) },
  )
  try {
    await node.start()
    const res = await fetch(`${node.apiUrl}/v1/dag/blocks`, {
      method: 'POST',
      headers: {
        authorization: 'Bearer k',
        'content-type': 'application/json',
        'x-request-id': 'trace-me-42',
      },
      body: JSON.stringify({ value: { a: 1 } }),
    })
    expect(res.status).toBe(201)
    await fetch(`${node.apiUrl}/health`, { headers: { 'x-request-id': 'other-7' } })
    // The access line is written when the response has finished, which may be just after fetch resolves:
    // wait for it (the test's own timeout bounds the wait) rather than for a guessed time.
    await waitUntil(() => lines.some((l) => l.includes('other-7') && l.includes('"msg":"request"')))
    const mine = lines.filter((l) => l.includes('trace-me-42'))
    const msgs = mine.map((l) => (JSON.parse(l) as { msg: string }).msg)
    expect(msgs).toContain('value stored') // from the API handler
    expect(msgs).toContain('block appended') // from the dag module, through the request's logger passed down
    expect(msgs).toContain('request') // the access line with status and latency
    for (const l of mine) expect(l.split('trace-me-42').length - 1).toBe(1)
    const other = lines.find((l) => l.includes('other-7'))!
    expect(JSON.parse(other)).not.toHaveProperty('cid')
  } finally {
    await node.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
