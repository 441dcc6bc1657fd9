/**
 * docs/disaster-recovery.md, walked with real processes: a devnet of three nodes writes blocks and ledger
 * transfers; node3 is backed up (a CAR export and a copy of its keystore, API key and config), writes more,
 * then is lost for good (SIGKILL, data folder destroyed) while the others go on. It is restored into a new data
 * folder with the same identity, the CAR imported before it joins, then it rejoins and catches up from its
 * peers (its own chains' later blocks included); every block verifies, its ledger accounts as of one instant
 * match the other nodes', and its next writes extend its chains with no equivocation anywhere. The last test
 * checks that every command the document shows is one this test (or the README) runs, and that its systemd
 * units pass `systemd-analyze verify`.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type CliResult,
  killAll,
  REPO_ROOT,
  type RunningNode,
  removeTempDirs,
  runCli,
  startNode,
  tempDir,
} from '../helpers/process.js'

interface NodeStatus {
  name: string
  apiUrl: string
  did: string
  dataDir: string
  pid: number | null
  running: boolean
  ready: boolean
  connectedPeers: number
  member: { did: string; dir: string }
}

interface Head {
  chain: string
  seq: number
  cid: string
}

interface Stats {
  blocks: number
  evidence: number
}

interface Account {
  did: string
  balance: number
  sent: number
  received: number
}

const DOC = join(REPO_ROOT, 'docs', 'disaster-recovery.md')

/** Every `icn` command line this test ran (the doc may show only these, or the README's). */
const ran: string[][] = []

let D: string
let B: string
/** node1..node3 as `up` reported them. */
let nodes: NodeStatus[]
/** The devnet's keystore passphrase (its nodes' and members'). */
let passphrase: string

async function icn(args: string[], timeoutMs = 20_000): Promise<CliResult> {
  ran.push(args)
  return runCli(args, { timeoutMs, env: { ICN_PASSPHRASE: passphrase } })
}

function ok(r: CliResult): CliResult {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
  return r
}

async function json<T>(args: string[], timeoutMs?: number): Promise<T> {
  return JSON.parse(ok(await icn([...args, '--json'], timeoutMs)).stdout) as T
}

const node = (name: string): NodeStatus => {
  const n = nodes.find((x) => x.name === name)
  if (!n) throw new Error(`no ${name}`)
  return n
}
const dataDir = (name: string): string => join(D, name)

/** The shell commands of the document that are not `icn` (cp, install, rm): run as written, through sh. */
function sh(script: string): void {
  ran.push(['sh', script])
  execFileSync('sh', ['-c', script], { env: { ...process.env, D, B, DATA: dataDir('node3') }, stdio: 'pipe' })
}

/** GET a JSON route of a node (polling goes over HTTP: a CLI process per poll would make the test slow). */
async function http<T>(name: string, path: string): Promise<T> {
  const res = await fetch(`${node(name).apiUrl}${path}`)
  if (res.status !== 200) throw new Error(`${name} ${path}: ${res.status} ${await res.text()}`)
  return (await res.json()) as T
}

const sortHeads = (hs: Head[]): Head[] =>
  hs.map(({ chain, seq, cid }) => ({ chain, seq, cid })).sort((a, b) => (a.chain < b.chain ? -1 : 1))

async function heads(name: string): Promise<Head[]> {
  return sortHeads((await http<{ chains: Head[] }>(name, '/v1/dag/chains')).chains)
}

/** `icn dag chains`, as the doc has the operator compare them. */
async function headsCli(name: string): Promise<Head[]> {
  return sortHeads((await json<{ chains: Head[] }>(['dag', 'chains', '--data-dir', dataDir(name)])).chains)
}

async function stats(name: string): Promise<Stats> {
  return http<Stats>(name, '/v1/dag/stats')
}

async function statsCli(name: string): Promise<Stats> {
  return json<Stats>(['dag', 'stats', '--data-dir', dataDir(name)])
}

async function put(name: string, value: unknown): Promise<{ cid: string; seq: number }> {
  return json(['dag', 'put', '--data-dir', dataDir(name), '--value', JSON.stringify(value)])
}

async function transfer(via: string, from: string, to: string, amount: number): Promise<CliResult> {
  const member = node(from).member
  return icn([
    'mana',
    'transfer',
    '--data-dir',
    dataDir(via),
    '--member',
    member.dir,
    '--to',
    node(to).member.did,
    '--amount',
    String(amount),
  ])
}

/** The three nodes hold the same chain heads (within `timeoutMs`). */
async function sameHeads(timeoutMs: number): Promise<boolean> {
  return eventually(async () => {
    const [h3, h1, h2] = await Promise.all([heads('node3'), heads('node1'), heads('node2')])
    return JSON.stringify(h3) === JSON.stringify(h1) && JSON.stringify(h3) === JSON.stringify(h2)
  }, timeoutMs)
}

/** Poll until `fn` is true or `timeoutMs` passes. */
async function eventually(fn: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await fn()) return true
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

beforeAll(async () => {
  const work = await tempDir('icn-dr-')
  D = join(work, 'devnet')
  B = join(work, 'backup')
})

afterAll(async () => {
  if (D && existsSync(join(D, 'devnet.json')))
    await runCli(['devnet', 'down', '--dir', D], { timeoutMs: 25_000 }).catch(() => {})
  await killAll()
  await removeTempDirs()
}, 40_000)

describe.sequential('disaster recovery: a node lost for good, restored from its backup and its peers', () => {
  /** The backup's own block count, and what node3 wrote after it (only its peers hold that). */
  let backedUp: number
  let afterBackup: { cid: string; seq: number }
  const cids: string[] = []

  it('a devnet of 3 writes blocks and ledger transfers; node3 is backed up: a CAR and its keys', async () => {
    const up = await icn(['devnet', 'up', '--nodes', '3', '--dir', D, '--timeout', '30', '--json'], 45_000)
    nodes = (JSON.parse(ok(up).stdout) as { nodes: NodeStatus[] }).nodes
    passphrase = (await readFile(join(D, 'passphrase'), 'utf8')).trim()
    for (const name of ['node1', 'node2', 'node3', 'node3'])
      cids.push((await put(name, { name, at: cids.length })).cid)
    ok(await transfer('node3', 'node3', 'node1', 25)) // on node3's ledger chain
    ok(await transfer('node1', 'node1', 'node3', 40)) // on node1's, crediting node3's member
    ok(await transfer('node2', 'node3', 'node2', 5)) // sent to node2, forwarded to node3 (member3's home)

    // Every node holds every block before the backup is taken, so the count below is the CAR's.
    expect(await sameHeads(15_000)).toBe(true)
    backedUp = (await stats('node3')).blocks
    // The backup, as the document's timer runs it, plus the keys copied once.
    sh('install -d -m 700 "$B" "$B/keys"')
    ok(await icn(['dag', 'export', '--data-dir', dataDir('node3'), '--out', join(B, 'node3.car')]))
    sh('cp -p "$DATA/keystore.json" "$DATA/api-key" "$DATA/config.json" "$B/keys/"')
    expect(backedUp).toBeGreaterThanOrEqual(8)
    expect(existsSync(join(B, 'node3.car.partial'))).toBe(false)
  }, 90_000)

  it('node3 writes more after the backup; then it is lost with its data folder, and the others go on', async () => {
    afterBackup = await put('node3', { after: 'the backup' })
    ok(await transfer('node3', 'node3', 'node1', 11))
    // Both reach the peers before node3 goes: they are the copies the restore gets back.
    expect(await sameHeads(15_000)).toBe(true)

    ok(await icn(['devnet', 'kill', 'node3', '--dir', D]))
    sh('rm -rf "$DATA"')
    expect(existsSync(dataDir('node3'))).toBe(false)

    cids.push((await put('node1', { while: 'node3 is gone' })).cid)
    ok(await transfer('node1', 'node1', 'node3', 9))
    ok(await transfer('node2', 'node2', 'node1', 3))
    // A member homed at the lost node cannot spend until its home is back: its record has nowhere to go.
    const stuck = await transfer('node1', 'node3', 'node1', 1)
    expect(stuck.code, stuck.stderr).toBe(1)
    expect(stuck.stderr).toContain('HOME_UNREACHABLE')
  }, 60_000)

  it('restore: a new data folder from the keys backup is the same identity; the CAR goes in before it joins', async () => {
    sh(
      'install -d -m 700 "$DATA" && cp -p "$B/keys/keystore.json" "$B/keys/api-key" "$B/keys/config.json" "$DATA/"',
    )
    const id = await json<{ did: string }>(['id', 'show', '--data-dir', dataDir('node3')])
    expect(id.did).toBe(node('node3').did)

    // Started with no genesis, the node is on no network: it holds only what the CAR gives it.
    const config = JSON.parse(await readFile(join(dataDir('node3'), 'config.json'), 'utf8')) as {
      apiListen: string
    }
    ran.push(['node', 'start', '--data-dir', dataDir('node3'), '--passphrase-file', join(D, 'passphrase')])
    const offline: RunningNode = await startNode(
      ['--data-dir', dataDir('node3'), '--passphrase-file', join(D, 'passphrase')],
      { apiListen: config.apiListen },
    )
    try {
      // A damaged copy is refused whole; the good one restores every block of the backup.
      const car = await readFile(join(B, 'node3.car'))
      await writeFile(join(B, 'damaged.car'), car.subarray(0, car.length - 7))
      const bad = await icn(['dag', 'import', '--data-dir', dataDir('node3'), join(B, 'damaged.car')])
      expect(bad.code, bad.stderr).toBe(2)
      expect(bad.stderr).toContain('INVALID_CAR')
      expect((await statsCli('node3')).blocks).toBe(0)

      const imp = await json<{ blocks: number; stored: number; equivocations: number }>([
        'dag',
        'import',
        '--data-dir',
        dataDir('node3'),
        join(B, 'node3.car'),
      ])
      expect(imp).toMatchObject({ blocks: backedUp, stored: backedUp, equivocations: 0 })
      expect((await statsCli('node3')).blocks).toBe(backedUp)
      // What node3 wrote after the backup is not in it.
      const own = (await headsCli('node3')).find((h) => h.chain === `${node('node3').did}/node`)
      expect(own?.seq).toBe(afterBackup.seq - 1)
    } finally {
      expect((await offline.stop('SIGTERM')).code).toBe(0)
    }
  }, 60_000)

  it('rejoin: it catches up from its peers, its own later blocks included', async () => {
    const r = await icn(['devnet', 'restart', 'node3', '--dir', D, '--timeout', '30', '--json'], 45_000)
    expect(JSON.parse(ok(r).stdout)).toMatchObject({ running: true, ready: true, connectedPeers: 2 })
    expect(await sameHeads(30_000), JSON.stringify(await heads('node3'))).toBe(true)
    expect(await headsCli('node3')).toEqual(await headsCli('node1'))
    const own = (await heads('node3')).find((h) => h.chain === `${node('node3').did}/node`)
    expect(own).toMatchObject({ seq: afterBackup.seq, cid: afterBackup.cid })
    expect((await stats('node3')).blocks).toBe((await stats('node1')).blocks)
  }, 90_000)

  it('every block verifies, the ledger accounts as of one instant match the peers, new writes extend its chains', async () => {
    const verified = await json<{ checked: number; bad: unknown[] }>(
      ['dag', 'verify', '--data-dir', dataDir('node3')],
      60_000,
    )
    expect(verified).toEqual({ checked: (await stats('node1')).blocks, bad: [] })
    ok(await icn(['dag', 'get', '--data-dir', dataDir('node3'), cids.at(-1)!]))
    for (const cid of cids)
      expect((await fetch(`${node('node3').apiUrl}/v1/dag/values/${cid}`)).status).toBe(200)

    const at = new Date().toISOString()
    const accounts = async (name: string): Promise<Account[]> =>
      (await json<{ accounts: Account[] }>(['mana', 'accounts', '--data-dir', dataDir(name), '--at', at]))
        .accounts
    // The ledger folds the blocks a moment after they are stored: wait for it, then all three agree.
    const query = `/v1/accounts?at=${encodeURIComponent(at)}`
    const served = JSON.stringify(await http('node1', query))
    await eventually(async () => JSON.stringify(await http('node3', query)) === served, 10_000)
    const a1 = await accounts('node1')
    const a3 = await accounts('node3')
    expect(a3).toEqual(a1)
    expect(a3).toEqual(await accounts('node2'))
    const m3 = a3.find((a) => a.did === node('node3').member.did)
    // member3 sent 25 + 5 (before the backup) + 11 (after it) and received 40 + 9 (the last while node3 was gone).
    expect(m3).toMatchObject({ sent: 41, received: 49 })

    // The restored node writes on: its chain and its ledger chain go on from the heads its peers gave back.
    const next = await put('node3', { after: 'the restore' })
    expect(next.seq).toBe(afterBackup.seq + 1)
    ok(await transfer('node3', 'node3', 'node2', 2))
    expect(
      await eventually(
        async () => (await fetch(`${node('node1').apiUrl}/v1/dag/blocks/${next.cid}`)).status === 200,
        10_000,
      ),
    ).toBe(true)
    for (const name of ['node1', 'node2']) expect((await stats(name)).evidence, name).toBe(0)
    expect((await statsCli('node3')).evidence).toBe(0)
  }, 90_000)
})

/** One command line of a fenced `sh` block: `icn`'s sub-command words and its flags. */
interface DocCommand {
  line: string
  words: string[]
  flags: string[]
}

/** The `icn …` commands of the `sh` blocks of a markdown file (continuation lines joined, comments dropped). */
function icnCommands(markdown: string): DocCommand[] {
  const out: DocCommand[] = []
  for (const block of markdown.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const lines = block[1]!.replace(/\\\n\s*/g, ' ').split('\n')
    for (const raw of lines) {
      const line = raw.replace(/\s+#.*$/, '').trim()
      if (line.startsWith('#')) continue
      for (const part of line.split(/&&|;|\|/)) {
        const tokens = part.trim().split(/\s+/)
        const at = tokens.findIndex((t) => t === 'icn' || t === 'bin/icn')
        if (at < 0) continue
        const rest = tokens.slice(at + 1)
        const words: string[] = []
        for (const t of rest) {
          if (t.startsWith('-') || t.includes('/') || t.includes('$') || t.includes('"')) break
          words.push(t)
        }
        out.push({ line, words: words.slice(0, 2), flags: rest.filter((t) => t.startsWith('--')) })
      }
    }
  }
  return out
}

describe('docs/disaster-recovery.md', () => {
  it('shows only commands this test or the README runs; its systemd units pass systemd-analyze verify', async () => {
    const doc = readFileSync(DOC, 'utf8')
    const readmeText = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')
    // The README's sh blocks, and the concrete commands it gives inline (not the synopses, with their [options]).
    const inline = [...readmeText.matchAll(/`((?:bin\/)?icn [^`[]+)`/g)].map((m) => m[1]!)
    const readme = icnCommands(`${readmeText}\n\`\`\`sh\n${inline.join('\n')}\n\`\`\`\n`)
    const known = new Map<string, Set<string>>()
    const learn = (words: string[], flags: string[]): void => {
      const key = words.slice(0, 2).join(' ')
      const set = known.get(key) ?? new Set<string>()
      for (const f of flags) set.add(f)
      known.set(key, set)
    }
    for (const c of readme) learn(c.words, c.flags)
    for (const args of ran) {
      if (args[0] === 'sh') continue
      const words: string[] = []
      for (const t of args) {
        if (t.startsWith('-') || words.length === 2) break
        words.push(t)
      }
      learn(
        words,
        args.filter((t) => t.startsWith('--')),
      )
    }
    const commands = icnCommands(doc)
    expect(commands.length).toBeGreaterThan(8)
    for (const c of commands) {
      const flags = known.get(c.words.join(' '))
      expect(
        flags,
        `"${c.line}": icn ${c.words.join(' ')} is run neither here nor in the README`,
      ).toBeDefined()
      for (const f of c.flags) expect(flags?.has(f), `"${c.line}": ${f} is not one this test uses`).toBe(true)
    }
    // The shell commands besides icn's are the ones this test runs through sh.
    const scripts = ran.filter((a) => a[0] === 'sh').map((a) => a[1]!)
    for (const s of scripts) expect(doc, `the doc shows: ${s}`).toContain(s)

    // The backup timer and service, as written in the doc.
    const units = [...doc.matchAll(/`\/etc\/systemd\/system\/([\w.@-]+)`:?\s*\n+```ini\n([\s\S]*?)```/g)]
    expect(units.map((u) => u[1]).sort()).toEqual(['icn-backup.service', 'icn-backup.timer'])
    const dir = await tempDir('icn-dr-units-')
    await mkdir(dir, { recursive: true })
    for (const [, name, text] of units) await writeFile(join(dir, name!), text!)
    const files = units.map((u) => join(dir, u[1]!))
    const out = execFileSync('systemd-analyze', ['verify', ...files], { encoding: 'utf8', stdio: 'pipe' })
    expect(out).toBe('')
    await rm(dir, { recursive: true, force: true })
  })
})
