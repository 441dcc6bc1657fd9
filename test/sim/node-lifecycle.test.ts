/**
 * `icn node start` as an operator runs it: a dev node with no questions, graceful and forced stops, one node
 * per data folder, a store that cannot open stops the node (no fallback), bad options are usage errors, and a
 * node on PostgreSQL.
 */
import { existsSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { request } from 'node:http'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers/federation.js'
import { createTestDatabase, rewritePgUrl, TcpProxy } from '../helpers/pg.js'
import {
  initDataDir,
  killAll,
  pollReady,
  removeTempDirs,
  runCli,
  startNode,
  TEST_PASSPHRASE,
  tempDir,
} from '../helpers/process.js'

afterEach(killAll)
afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

async function putValue(
  api: string,
  apiKey: string,
  value: unknown,
): Promise<{ status: number; cid?: string }> {
  const res = await fetch(`${api}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value }),
  })
  const body = (await res.json()) as { cid?: string }
  return { status: res.status, cid: body.cid }
}

/** The `icn-dev-*` folders a dev node made under `tmp`. */
async function devFolders(tmp: string): Promise<string[]> {
  return (await readdir(tmp)).filter((f) => f.startsWith('icn-dev-'))
}

describe('icn node start --dev', () => {
  it('runs with no questions, serves health, readiness and its identity, and SIGTERM stops it cleanly', async () => {
    const tmp = await tempDir()
    const node = await startNode(['--dev'], { env: { ICN_PASSPHRASE: undefined, TMPDIR: tmp } })
    const { info } = node
    expect(info.did).toMatch(/^did:key:z6Mk/)
    expect(info.api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(info.pid).toBe(node.proc.pid)
    expect(info.dataDir.startsWith(tmp)).toBe(true)
    expect(existsSync(info.dataDir)).toBe(true)

    const health = await getJson(`${info.api}/health`)
    expect(health).toEqual({ status: 200, body: { status: 'ok' } })
    const ready = await getJson(`${info.api}/ready`)
    expect(ready.status).toBe(200)
    expect(ready.body).toMatchObject({ ready: true, components: { store: { ready: true } } })
    const me = await getJson(`${info.api}/v1/node`)
    expect(me.status).toBe(200)
    expect(me.body).toMatchObject({ did: info.did, store: 'sqlite', head: null })
    expect((await putValue(info.api, info.apiKey, { hello: 'world' })).status).toBe(201)

    expect(await node.stop('SIGTERM')).toEqual({ code: 0, signal: null })
    expect(existsSync(info.dataDir)).toBe(false)
    expect(await devFolders(tmp)).toEqual([])
  })

  it('SIGINT stops it with status 0; a second SIGINT while it is stopping forces the exit', async () => {
    const tmp = await tempDir()
    const env = { ICN_PASSPHRASE: undefined, TMPDIR: tmp }
    const [calm, stuck] = await Promise.all([
      startNode(['--dev'], { env }),
      startNode(['--dev'], { env: { ...env, ICN_LOG_LEVEL: 'info' } }), // its stop is read from its log
    ])

    expect(await calm.stop('SIGINT')).toEqual({ code: 0, signal: null })
    expect(existsSync(calm.info.dataDir)).toBe(false)

    // An upload that never finishes keeps the graceful stop waiting (up to its 10 s timeout) ...
    const url = new URL(`${stuck.info.api}/v1/dag/import`)
    const req = request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'POST',
      headers: {
        authorization: `Bearer ${stuck.info.apiKey}`,
        'content-type': 'application/vnd.ipld.car',
        'content-length': 1_000_000,
      },
    })
    req.on('error', () => {})
    await new Promise((resolve) => req.once('socket', (socket) => socket.once('connect', resolve)))
    // A real CAR header (the node's own export of its empty store), so the upload passes the framing check and
    // stays held while the rest of the declared body never comes.
    const header = Buffer.from(
      await (
        await fetch(`${stuck.info.api}/v1/dag/export`, {
          headers: { authorization: `Bearer ${stuck.info.apiKey}` },
        })
      ).arrayBuffer(),
    )
    req.write(header)
    // Wait until the node holds the upload (its import gauge says so), not for a guessed time.
    await waitFor('the upload to be held', async () =>
      /^icn_api_imports_running 1$/m.test(await (await fetch(`${stuck.info.api}/metrics`)).text()),
    )
    stuck.proc.kill('SIGINT')
    await waitFor('the stop to begin', async () => stuck.stderr().includes('signal received: stopping'))
    expect(stuck.proc.exitCode, 'still stopping after the first SIGINT').toBe(null)
    // ... and the second signal forces the exit (status 130), without waiting for the upload.
    stuck.proc.kill('SIGINT')
    const exit = await stuck.waitExit()
    req.destroy()
    expect(exit).toEqual({ code: 130, signal: null })
    expect(stuck.stderr()).toContain('second signal: exiting now')
  })
})

describe('icn node start failures', () => {
  it('a second node on the same data folder fails fast and the first keeps serving', async () => {
    const dir = await tempDir()
    await initDataDir(dir)
    const first = await startNode(['--data-dir', dir])
    const second = await runCli(['node', 'start', '--data-dir', dir, '--api-listen', '127.0.0.1:0', '--json'])
    expect(second.code, second.stderr).not.toBe(0)
    expect(second.stdout).toBe('')
    expect(second.stderr).toContain('STORE_LOCKED')
    expect(second.stderr).toMatch(/locked|another icn node/)

    expect((await getJson(`${first.info.api}/health`)).status).toBe(200)
    expect((await getJson(`${first.info.api}/ready`)).body).toMatchObject({ ready: true })
    expect((await putValue(first.info.api, first.info.apiKey, { still: 'here' })).status).toBe(201)
    expect(first.proc.exitCode).toBe(null)
    expect((await first.stop()).code).toBe(0)
  })

  it('an unreachable PostgreSQL stops the node with STORE_OPEN_FAILED: no fallback, never serves', async () => {
    const tmp = await tempDir()
    const r = await runCli(
      [
        'node',
        'start',
        '--dev',
        '--store',
        'postgres',
        '--pg-url',
        'postgres://postgres@127.0.0.1:1/none',
        '--api-listen',
        '127.0.0.1:0',
        '--json',
      ],
      { env: { TMPDIR: tmp }, timeoutMs: 15_000 },
    )
    expect(r.code, r.stderr).not.toBe(0)
    expect(r.stderr).toContain('STORE_OPEN_FAILED')
    expect(r.stdout).toBe('')
    expect(await devFolders(tmp)).toEqual([])
  })

  it('inconsistent options are usage errors (exit 2) that name the problem', async () => {
    const dir = await tempDir()
    await initDataDir(dir)
    const [noUrl, badListen] = await Promise.all([
      runCli(['node', 'start', '--data-dir', dir, '--store', 'postgres', '--api-listen', '127.0.0.1:0']),
      runCli(['node', 'start', '--data-dir', dir, '--api-listen', 'nonsense']),
    ])
    expect(noUrl.code, noUrl.stderr).toBe(2)
    expect(noUrl.stderr).toContain('INVALID_OPTION')
    expect(noUrl.stderr).toContain('--pg-url')
    expect(badListen.code, badListen.stderr).toBe(2)
    expect(badListen.stderr).toContain('INVALID_OPTION')
    expect(badListen.stderr).toContain('nonsense')
    expect(noUrl.stdout + badListen.stdout).toBe('')
  })

  // Bug in src/cli/commands/node.ts: with --dev the temporary folder is created before the options are checked,
  // and only a failure in node.start() removes it, so a usage error leaves an icn-dev-* folder (with a keystore
  // and API key) behind. Flip to `it` once fixed.
  it('--dev leaves no temporary folder behind when its options are invalid', async () => {
    const tmp = await tempDir()
    const r = await runCli(['node', 'start', '--dev', '--store', 'postgres', '--api-listen', '127.0.0.1:0'], {
      env: { TMPDIR: tmp },
    })
    expect(r.code).toBe(2)
    expect(await devFolders(tmp)).toEqual([])
  })
})

describe('icn node start --store postgres', () => {
  it('serves puts and gets from a fresh database', async () => {
    const db = await createTestDatabase()
    try {
      const dir = await tempDir()
      await initDataDir(dir, ['--store', 'postgres', '--pg-url', db.url])
      const node = await startNode(['--data-dir', dir], { env: { ICN_PASSPHRASE: TEST_PASSPHRASE } })
      const { api, apiKey, did } = node.info
      expect(node.info.store).toBe('postgres')
      expect((await getJson(`${api}/v1/node`)).body).toMatchObject({ did, store: 'postgres' })
      // The node says "running" before its first store ping has answered, so /ready may lag a moment (see the
      // report: it should not; and meanwhile its 503 comes out as a 500).
      expect((await pollReady(api, { timeoutMs: 5_000 })).body).toMatchObject({ ready: true })
      const values = [{ n: 1 }, [1, 2, 3], 'text', { nested: { deep: [true, null] } }]
      const cids: string[] = []
      for (const value of values) {
        const r = await putValue(api, apiKey, value)
        expect(r.status).toBe(201)
        cids.push(r.cid!)
      }
      for (const [i, cid] of cids.entries()) {
        const got = await getJson(`${api}/v1/dag/values/${cid}`)
        expect(got.status).toBe(200)
        expect(got.body).toMatchObject({ cid, author: did, seq: i, value: values[i] })
      }
      expect((await getJson(`${api}/v1/node`)).body).toMatchObject({ head: { seq: values.length - 1 } })
      expect((await node.stop()).code).toBe(0)
    } finally {
      await killAll()
      await db.drop()
    }
  })

  // Bug in src/api/server.ts routeSchema(): every route's 5xx replies are serialized with the Error schema, so
  // the readiness report /ready sends with 503 fails serialization ("code" is required) and the client gets
  // 500 INTERNAL instead of the per-component detail. Flip to `it` once fixed.
  it('/ready answers 503 with per-component detail while the database is unreachable, then 200 again', async () => {
    const db = await createTestDatabase()
    const proxy = TcpProxy.forUrl(db.url)
    try {
      const port = await proxy.start()
      const url = rewritePgUrl(db.url, { host: '127.0.0.1', port })
      const node = await startNode(['--dev', '--store', 'postgres', '--pg-url', url], {
        env: { ICN_PASSPHRASE: undefined, TMPDIR: await tempDir() },
      })
      const { api } = node.info
      await pollReady(api)
      await proxy.stop()
      const down = await pollReady(api, { until: (s) => s !== 200 })
      expect(down.status).toBe(503)
      expect(down.body).toMatchObject({ ready: false, components: { store: { ready: false } } })
      await proxy.start(port)
      await pollReady(api, { timeoutMs: 15_000 })
      expect((await node.stop()).code).toBe(0)
    } finally {
      await killAll()
      await proxy.stop()
      await db.drop()
    }
  })
})
