/**
 * `icn devnet` with real processes: three nodes come up ready and connected, a block written on one reaches the
 * others, a killed node shows as down and comes back with `restart`, `down` leaves no process, a stopped devnet
 * starts again with the same nodes, and bad arguments are usage errors. The tests run in order on one devnet.
 */
import { existsSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openMember } from '../../src/cli/member.js'
import { type CliResult, killAll, removeTempDirs, runCli, tempDir } from '../helpers/process.js'

interface NodeStatus {
  name: string
  apiUrl: string
  apiKey: string
  did: string
  peerId: string
  dataDir: string
  pid: number | null
  running: boolean
  ready: boolean
  connectedPeers: number
  expectedPeers: number
  member: { did: string; dir: string } | null
}

interface Status {
  dir: string
  federation: string
  nodes: NodeStatus[]
}

let dir: string
/** Every node pid the tests have seen, so afterAll can make sure none is left. */
const pids = new Set<number>()

/** The node process `pid` is alive and runs in our devnet folder (so we never signal an unrelated process). */
function ourNodeAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)
  } catch {
    return process.platform !== 'linux'
  }
}

function pidGone(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return false
  } catch {
    return true
  }
}

/**
 * The pid is gone (`kill(pid, 0)` throws) within a few seconds: a killed node whose parent (the `icn devnet`
 * command) has exited stays a zombie until init reaps it.
 */
async function gone(pid: number): Promise<boolean> {
  return eventually(async () => pidGone(pid), 5_000)
}

async function recordPids(): Promise<void> {
  try {
    const state = JSON.parse(await readFile(join(dir, 'devnet.json'), 'utf8')) as {
      nodes: { pid: number | null }[]
    }
    for (const n of state.nodes) if (n.pid) pids.add(n.pid)
  } catch {
    // no state (yet)
  }
}

async function devnet(args: string[], timeoutMs = 20_000): Promise<CliResult> {
  const r = await runCli(['devnet', ...args, '--dir', dir], { timeoutMs })
  await recordPids()
  return r
}

async function status(): Promise<Status> {
  const r = await devnet(['status', '--json'])
  expect(r.code, r.stderr).toBe(0)
  const s = JSON.parse(r.stdout) as Status
  for (const n of s.nodes) if (n.pid) pids.add(n.pid)
  return s
}

function ok(r: CliResult): CliResult {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
  return r
}

function byName(s: Status, name: string): NodeStatus {
  const n = s.nodes.find((x) => x.name === name)
  if (!n) throw new Error(`no ${name} in the status`)
  return n
}

/** Poll until `fn` is true or `timeoutMs` passes; returns the last answer. */
async function eventually(fn: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await fn()) return true
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

beforeAll(async () => {
  dir = await tempDir('icn-devnet-')
})

afterAll(async () => {
  await recordPids()
  await runCli(['devnet', 'down', '--dir', dir], { timeoutMs: 25_000 }).catch(() => {})
  for (const pid of pids) if (ourNodeAlive(pid)) process.kill(pid, 'SIGKILL')
  await killAll()
  await removeTempDirs()
}, 40_000)

describe.sequential('icn devnet', () => {
  it('up starts 3 nodes and returns once every one is ready and connected to the other two', async () => {
    const r = await devnet(['up', '--nodes', '3', '--timeout', '25', '--json'], 40_000)
    expect(r.code, r.stderr).toBe(0)
    const s = JSON.parse(r.stdout) as Status
    expect(s.nodes.map((n) => n.name)).toEqual(['node1', 'node2', 'node3'])
    for (const n of s.nodes) {
      expect(n).toMatchObject({ running: true, ready: true, connectedPeers: 2, expectedPeers: 2 })
      expect(n.did).toMatch(/^did:key:z6Mk/)
      expect(n.apiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    }
    expect(r.stderr).toContain('node3 ready')
    expect(r.stderr).toContain('mesh 3/3 nodes connected')
  }, 45_000)

  it('status shows the three nodes running and ready with their pids; a second up is refused', async () => {
    const s = await status()
    expect(s.federation).toMatch(/^bafy/)
    expect(s.nodes).toHaveLength(3)
    for (const n of s.nodes) {
      expect(n.running, n.name).toBe(true)
      expect(n.ready, n.name).toBe(true)
      expect(typeof n.pid).toBe('number')
      expect(pidGone(n.pid!)).toBe(false)
    }
    const me = (await (await fetch(`${byName(s, 'node1').apiUrl}/v1/node`)).json()) as { did: string }
    expect(me.did).toBe(byName(s, 'node1').did)

    const again = await devnet(['up'])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('DEVNET_RUNNING')
    expect(again.stderr).toContain('devnet down')

    const table = await devnet(['status'])
    expect(table.code, table.stderr).toBe(0)
    expect(table.stdout).toMatch(/node3\s+http:\/\/127\.0\.0\.1:\d+/)
    // The human table carries each node's API key, as the README promises.
    for (const n of s.nodes) expect(table.stdout).toMatch(new RegExp(`${n.name}\\s+\\S+\\s+${n.apiKey}\\s`))
  })

  it('each node has its own founding member, homed there, whose folder opens without a passphrase', async () => {
    const s = await status()
    const members = s.nodes.map((n) => n.member!)
    for (const [i, n] of s.nodes.entries()) {
      expect(n.member, n.name).toEqual({
        did: expect.stringMatching(/^did:key:z6Mk/),
        dir: join(dir, 'members', `member${i + 1}`),
      })
      expect(n.member!.did).not.toBe(n.did)
    }
    expect(new Set(members.map((m) => m.did)).size).toBe(3)

    // The genesis lists exactly these members, each homed at its node; every node serves the same.
    const genesis = JSON.parse(
      ok(await runCli(['federation', 'show', join(dir, 'genesis.car'), '--json'])).stdout,
    ) as {
      members: string[]
      homes: Record<string, string>
    }
    expect(genesis.members).toEqual(members.map((m) => m.did).sort())
    expect(genesis.homes).toEqual(Object.fromEntries(s.nodes.map((n) => [n.member!.did, n.did])))
    const served = (await (await fetch(`${byName(s, 'node2').apiUrl}/v1/federation`)).json()) as {
      homes: Record<string, string>
    }
    expect(served.homes).toEqual(genesis.homes)

    // `--member DIR` needs nothing else: no ICN_PASSPHRASE, no terminal.
    for (const n of s.nodes) {
      const m = await openMember(n.member!.dir, { env: {}, interactive: false })
      expect(m).toMatchObject({ did: n.member!.did, dir: n.member!.dir, home: n.did, homeDataDir: n.dataDir })
      expect(m.signer.did).toBe(n.member!.did)
    }
    const shown = JSON.parse(
      ok(
        await runCli(['member', 'show', '--dir', members[0]!.dir, '--json'], {
          env: { ICN_PASSPHRASE: undefined },
        }),
      ).stdout,
    ) as { did: string; home: string }
    expect(shown).toMatchObject({ did: members[0]!.did, home: byName(s, 'node1').did })

    const table = ok(await devnet(['status'])).stdout
    expect(table).toMatch(/PEERS\s+MEMBER/)
    for (const m of members) expect(table).toContain(m.dir)
  })

  it('a block written on node1 reaches node2 and node3', async () => {
    const s = await status()
    const node1 = byName(s, 'node1')
    const res = await fetch(`${node1.apiUrl}/v1/dag/blocks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${node1.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: { devnet: 'hello', at: Date.now() } }),
    })
    expect(res.status).toBe(201)
    const { cid } = (await res.json()) as { cid: string }
    for (const name of ['node2', 'node3']) {
      const api = byName(s, name).apiUrl
      const arrived = await eventually(
        async () => (await fetch(`${api}/v1/dag/blocks/${cid}`).catch(() => undefined))?.status === 200,
        8_000,
      )
      expect(arrived, `block ${cid} on ${name}`).toBe(true)
    }
  })

  it('kill node3: it is gone and status shows it not running while the others run on', async () => {
    const before = byName(await status(), 'node3')
    const r = await devnet(['kill', 'node3'])
    expect(r.code, r.stderr).toBe(0)
    // Its one line, once: on stdout, nothing on stderr.
    expect(r.stdout).toBe(`node3 killed (pid ${before.pid})\n`)
    expect(r.stderr).toBe('')
    expect(await gone(before.pid!)).toBe(true)
    const s = await status()
    expect(byName(s, 'node3')).toMatchObject({ running: false, ready: false })
    expect(byName(s, 'node1')).toMatchObject({ running: true, ready: true })
    expect(byName(s, 'node2')).toMatchObject({ running: true, ready: true })

    // One after the other: devnet commands on one folder take its lock, and a second one at the same moment is
    // refused with DEVNET_BUSY.
    const twice = await devnet(['kill', 'node3'])
    const unknown = await devnet(['kill', 'node9'])
    expect(twice.code).toBe(1)
    expect(twice.stderr).toContain('NODE_NOT_RUNNING')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain('UNKNOWN_NODE')
  })

  it('restart node3: a new process, ready and connected to both others', async () => {
    const old = byName(await status(), 'node3').pid
    const r = await devnet(['restart', 'node3', '--timeout', '20', '--json'], 30_000)
    expect(r.code, r.stderr).toBe(0)
    const node3 = JSON.parse(r.stdout) as NodeStatus
    expect(node3.pid).not.toBe(old)
    expect(node3).toMatchObject({ running: true, ready: true, connectedPeers: 2 })
    // Progress counts the node's connections to the federation, not "mesh 1/1 nodes".
    expect(r.stderr).toContain('node3 connected to 2/2 peers')
    expect(r.stderr).not.toContain('mesh 1/1')
    expect(r.stderr).toMatch(/node3 ready and connected \(\d+\.\d s after its process started\)/)
    const s = await status()
    for (const n of s.nodes) expect(n, n.name).toMatchObject({ running: true, ready: true })
  }, 35_000)

  it('down stops every node process; up starts the same nodes again; down --clean removes the devnet', async () => {
    const s = await status()
    const running = s.nodes.filter((n) => n.running).map((n) => n.pid!)
    expect(running).toHaveLength(3)
    const r = await devnet(['down', '--json'], 30_000)
    expect(r.code, r.stderr).toBe(0)
    for (const pid of running) expect(await gone(pid), `pid ${pid}`).toBe(true)
    const after = await status()
    for (const n of after.nodes) expect(n, n.name).toMatchObject({ running: false, ready: false })

    // A stopped devnet starts again with the same identities (and data); it need not mesh for this check.
    const again = await devnet(['up', '--timeout', '15', '--json'], 25_000)
    const restarted = await status()
    expect(restarted.nodes.map((n) => n.did)).toEqual(s.nodes.map((n) => n.did))
    for (const n of restarted.nodes) expect(n.running, n.name).toBe(true)
    expect(again.code, again.stderr).toBe(0)

    const clean = await devnet(['down', '--clean'], 30_000)
    expect(clean.code, clean.stderr).toBe(0)
    for (const n of restarted.nodes) expect(await gone(n.pid!), n.name).toBe(true)
    expect(existsSync(join(dir, 'members'))).toBe(false)
    const none = await devnet(['status'])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain('DEVNET_NOT_FOUND')
  }, 60_000)

  it('bad arguments are usage errors (exit 2); a folder with no devnet is an error (exit 1)', async () => {
    const empty = await tempDir('icn-devnet-empty-')
    const [zero, many, word, noDevnet] = await Promise.all([
      runCli(['devnet', 'up', '--nodes', '0', '--dir', empty]),
      runCli(['devnet', 'up', '--nodes', '51', '--dir', empty]),
      runCli(['devnet', 'up', '--nodes', 'three', '--dir', empty]),
      runCli(['devnet', 'down', '--dir', empty]),
    ])
    expect(zero.code, zero.stderr).toBe(2)
    expect(zero.stderr).toContain('--nodes')
    expect(many.code, many.stderr).toBe(2)
    expect(word.code, word.stderr).toBe(2)
    expect(noDevnet.code, noDevnet.stderr).toBe(1)
    expect(noDevnet.stderr).toContain('DEVNET_NOT_FOUND')
  })
})

describe('icn devnet demo --json', () => {
  it('prints its measurements as JSON on stdout, the tour on stderr, with one consistent start-up figure', async () => {
    const work = await tempDir('icn-demo-')
    const r = await runCli(['devnet', 'demo', '--nodes', '3', '--dir', join(work, 'demo'), '--json'], {
      timeoutMs: 110_000,
    })
    expect(r.code, r.stderr).toBe(0)
    const summary = JSON.parse(r.stdout) as {
      nodes: number
      startup: { totalSeconds: number; createSeconds: number; connectSeconds: number }
      propagation: { writer: string; cid: string; arrivals: { node: string; ms: number; via: string }[] }
      transfer: {
        amount: number
        from: { member: string; did: string; home: string; balance: number; sent: number; received: number }
        to: { member: string; did: string; home: string; balance: number; sent: number; received: number }
        cid: string
        chain: string
        ts: string
        readOn: string
        readAfterMs: number
      }
      catchUp: { node: string; blocksWhileDown: number; seconds: number; blocks: number }
      kept: boolean
    }
    expect(summary).toMatchObject({ nodes: 3, kept: false, propagation: { writer: 'node1' } })
    expect(summary.propagation.arrivals.map((a) => a.node)).toEqual(['node2', 'node3'])
    expect(summary.catchUp).toMatchObject({ node: 'node3', blocksWhileDown: 200 })
    // 200 blocks, the first one and the ledger block of the transfer (node1's chain), at least.
    expect(summary.catchUp.blocks).toBeGreaterThanOrEqual(203)
    const { totalSeconds, createSeconds, connectSeconds } = summary.startup
    expect(Math.abs(createSeconds + connectSeconds - totalSeconds)).toBeLessThanOrEqual(0.11)
    // The progress line and the tour's line give the same connect figure.
    expect(r.stderr).toContain(
      `all 3 nodes ready and connected (${connectSeconds.toFixed(1)} s after their processes started)`,
    )
    expect(r.stderr).toContain(`${totalSeconds.toFixed(1)} s after the start`)
    expect(r.stderr).toContain(`${connectSeconds.toFixed(1)} s from process start to connected`)

    // member1 (homed at node1) paid member2 (homed at node2); node3, which wrote neither, shows both balances as
    // of the block's time, the same as the receipt. Each member starts with the genesis allocation, at the cap.
    const t = summary.transfer
    expect(t).toMatchObject({
      amount: 250,
      from: { member: 'member1', home: 'node1', sent: 250, received: 0 },
      to: { member: 'member2', home: 'node2', sent: 0, received: 250 },
      readOn: 'node3',
    })
    expect(t.from.did).not.toBe(t.to.did)
    expect(t.to.balance - t.from.balance).toBe(500)
    expect(t.chain).toMatch(/^did:key:z6Mk\w+\/ledger$/)
    expect(r.stderr).toContain(
      '2. A member pays a member homed on another node: member1 (homed at node1) sends 250 mana to member2 (homed at node2):',
    )
    expect(r.stderr).toContain(`node1 wrote it in ledger block ${t.cid} (member1 signed it) at ${t.ts}`)
    expect(r.stderr).toContain(
      `node3 shows, as of ${t.ts} (${t.readAfterMs.toFixed(1)} ms later): member1 ${t.from.balance}, member2 ${t.to.balance} (node1 said the same)`,
    )
    expect(r.stderr).toContain('3. node3 crashes (SIGKILL)')
    expect(r.stderr).toContain('4. node3 restarts and catches up')
    expect(r.stderr).toContain('Devnet stopped and removed.')
  }, 120_000)
})
