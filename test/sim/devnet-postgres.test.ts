/**
 * `icn devnet up --store postgres --pg-url URL`: every node gets its own database on that server (created when
 * missing), the federation replicates as on SQLite, and `down --clean` drops the databases again.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { rewritePgUrl, sql, TEST_PG_URL } from '../helpers/pg.js'
import { killAll, removeTempDirs, runCli, tempDir } from '../helpers/process.js'

const base = `icn_dn_${randomBytes(4).toString('hex')}`
const url = rewritePgUrl(TEST_PG_URL, { database: base })
let dir = ''

async function databases(): Promise<string[]> {
  const r = await sql(TEST_PG_URL, 'SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1', [
    `${base}%`,
  ])
  return r.rows.map((row: { datname: string }) => row.datname)
}

afterAll(async () => {
  if (dir) await runCli(['devnet', 'down', '--clean', '--dir', dir], { timeoutMs: 30_000 })
  await killAll()
  for (const name of await databases()) await sql(TEST_PG_URL, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await removeTempDirs()
})

it('runs each node on its own PostgreSQL database, replicates, and drops them with down --clean', async () => {
  dir = join(await tempDir('icn-devnet-pg-'), 'net')
  const up = await runCli(
    ['devnet', 'up', '--nodes', '2', '--dir', dir, '--store', 'postgres', '--pg-url', url, '--json'],
    {
      timeoutMs: 90_000,
    },
  )
  expect(up.code, up.stderr).toBe(0)
  const status = JSON.parse(up.stdout) as {
    nodes: { apiUrl: string; apiKey: string; connectedPeers: number }[]
  }
  expect(status.nodes.map((n) => n.connectedPeers)).toEqual([1, 1])
  expect(await databases()).toEqual([`${base}_devnet_node1`, `${base}_devnet_node2`])
  for (const n of status.nodes) {
    const info = (await (await fetch(`${n.apiUrl}/v1/node`)).json()) as { store: string }
    expect(info.store).toBe('postgres')
  }
  const [a, b] = status.nodes as [(typeof status.nodes)[0], (typeof status.nodes)[0]]
  const res = await fetch(`${a.apiUrl}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${a.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value: { on: 'postgres' } }),
  })
  const { cid } = (await res.json()) as { cid: string }
  const deadline = Date.now() + 15_000
  let status2 = 0
  while (Date.now() < deadline && status2 !== 200) {
    status2 = (await fetch(`${b.apiUrl}/v1/dag/blocks/${cid}`)).status
    if (status2 !== 200) await new Promise((r) => setTimeout(r, 100))
  }
  expect(status2).toBe(200)
  const down = await runCli(['devnet', 'down', '--clean', '--dir', dir], { timeoutMs: 30_000 })
  expect(down.code, down.stderr).toBe(0)
  dir = ''
  expect(await databases()).toEqual([])
}, 120_000)
