import { randomBytes } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { followEvents } from '../api/events.js'
import { recordToJson, signRecord } from '../economics/index.js'
import { resolvePassphrase } from '../identity/index.js'
import { readMemberDir, unlockMemberDir } from '../node/member-dir.js'
import { InvalidOptionError } from '../node/options.js'
import { Devnet, type DevnetNodeStatus, type DevnetProgress } from './devnet.js'

export interface DemoOptions {
  nodes: number
  /** Devnet folder; default a new temporary one. */
  dir?: string
  /** Leave the devnet running at the end (else it is stopped and removed). */
  keep?: boolean
  /**
   * Also run Prometheus and Alertmanager (`up --monitor`) and show IcnNodeDown firing for the crashed node, then
   * resolving once it is back.
   */
  monitor?: boolean
  /** Blocks written while one node is down. */
  blocksWhileDown?: number
  out: (line: string) => void
  onProgress?: (e: DevnetProgress) => void
}

/** What the demo measured (`icn devnet demo --json` prints it). Times are wall-clock, for a person to read. */
export interface DemoSummary {
  nodes: number
  dir: string
  federation: string
  /** From the command's start to every node ready and connected: creating the identities and genesis, then
   * from the processes' start to connected (the figure `devnet up` prints). */
  startup: { totalSeconds: number; createSeconds: number; connectSeconds: number }
  /** A block written on the first node, and when each other node stored it (seen on its /v1/events). */
  propagation: { writer: string; cid: string; arrivals: { node: string; ms: number; via: string }[] }
  /**
   * A member-signed transfer from the first node's member to the second node's, written by the payer's home
   * node, then both accounts read on another node (the third, or the payee's home in a 2-node devnet) as of the
   * transfer's block time: the same figures as the home node's receipt.
   */
  transfer: DemoTransfer
  /** The last node, killed while the others wrote, then restarted: how long until it held every chain. */
  catchUp: { node: string; blocksWhileDown: number; seconds: number; blocks: number }
  /** With `monitor`: seconds from the kill to IcnNodeDown active in Alertmanager, and from the restart to it gone. */
  alert?: { name: string; firingSeconds: number; resolvedSeconds: number }
  /** The devnet was left running (`--keep`); else it was stopped and removed. */
  kept: boolean
}

/** One side of the demo's transfer: the member, its home node (devnet name) and its account as read. */
export interface DemoParty {
  member: string
  did: string
  home: string
  balance: number
  sent: number
  received: number
}

export interface DemoTransfer {
  amount: number
  from: DemoParty
  to: DemoParty
  /** The ledger block that holds it, on `<payer's home DID>/ledger`, and its time (ISO-8601). */
  cid: string
  chain: string
  ts: string
  /** The node the balances were read on, and how long after the receipt it showed them (ms). */
  readOn: string
  readAfterMs: number
}

/** Mana the demo's member1 pays member2. */
const DEMO_AMOUNT = 250

const round1 = (x: number): number => Math.round(x * 10) / 10

/**
 * The README's first command: start a devnet, write a block on node1 and watch it reach every other node
 * (through their /v1/events streams), have member1 pay member2 (members homed at node1 and node2) and read both
 * balances on a third node, kill the last node, write while it is down, restart it and time its
 * catch-up, then stop everything. Each step prints what it saw; the figures are returned.
 */
export async function runDemo(opts: DemoOptions): Promise<DemoSummary> {
  const { out } = opts
  if (opts.nodes < 2) throw new InvalidOptionError('the demo needs at least 2 nodes')
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'icn-demo-')))
  const whileDown = opts.blocksWhileDown ?? 200
  out(`Starting a devnet of ${opts.nodes} nodes in ${dir} ...`)
  const t0 = Date.now()
  let connectMs = 0
  const devnet = await Devnet.up({
    dir,
    nodes: opts.nodes,
    monitor: opts.monitor,
    onProgress: (e) => {
      if (e.kind === 'done' && e.elapsedMs !== undefined) connectMs = e.elapsedMs
      opts.onProgress?.(e)
    },
  })
  const totalMs = Date.now() - t0
  let keep = false
  try {
    const status = await devnet.status()
    const startup = {
      totalSeconds: round1(totalMs / 1000),
      connectSeconds: round1(connectMs / 1000),
      createSeconds: round1((totalMs - connectMs) / 1000),
    }
    out(
      `All ${opts.nodes} nodes ready and fully connected ${startup.totalSeconds.toFixed(1)} s after the start ` +
        `(${startup.createSeconds.toFixed(1)} s to create identities and genesis, ` +
        `${startup.connectSeconds.toFixed(1)} s from process start to connected):`,
    )
    for (const n of status.nodes) out(`  ${n.name}  ${n.apiUrl}  ${n.did}`)
    const [writer, ...others] = status.nodes as [DevnetNodeStatus, DevnetNodeStatus, ...DevnetNodeStatus[]]

    out(`\n1. A block written on ${writer.name} reaches every node (watched on their /v1/events streams):`)
    const watch = others.map((n) => watchFor(n))
    await Promise.all(watch.map((w) => w.ready))
    const started = performance.now()
    const { cid } = await put(writer, { hello: 'federation', at: new Date().toISOString() })
    out(`   ${writer.name} stored ${cid}`)
    const arrivals: DemoSummary['propagation']['arrivals'] = []
    for (const [i, w] of watch.entries()) {
      const ev = await w.until(cid, 15_000)
      const ms = Math.round((ev.at - started) * 10) / 10
      arrivals.push({ node: others[i]!.name, ms, via: ev.origin })
      out(`   ${others[i]!.name} has it after ${ms.toFixed(1)} ms (via ${ev.origin})`)
    }
    for (const w of watch) w.close()

    const transfer = await demoTransfer(status.nodes, out)

    const victim = others[others.length - 1]!
    out(`\n3. ${victim.name} crashes (SIGKILL); the others write ${whileDown} blocks meanwhile:`)
    await devnet.kill(victim.name)
    const killedAt = Date.now()
    const am = devnet.monitor?.alertmanager
    let firingSeconds = 0
    if (am) {
      out(`   waiting for Prometheus and Alertmanager to notice (${am}) ...`)
      await waitAlert(am, victim.name, true, 90_000)
      firingSeconds = round1((Date.now() - killedAt) / 1000)
      out(
        `   alert IcnNodeDown for ${victim.name} firing in Alertmanager ${firingSeconds.toFixed(1)} s after the kill`,
      )
    }
    const writers = status.nodes.filter((n) => n.name !== victim.name)
    for (let i = 0; i < whileDown; i++)
      await put(writers[i % writers.length]!, { i, note: 'written while down' })
    out(`   written; ${victim.name} is down`)
    out(`\n4. ${victim.name} restarts and catches up by itself (anti-entropy):`)
    const restartAt = Date.now()
    const back = await devnet.restart(victim.name)
    const want = await chains(writer)
    for (;;) {
      if (sameChains(await chains(back), want)) break
      if (Date.now() - restartAt > 60_000) throw new Error(`${victim.name} did not catch up within 60 s`)
      await new Promise((r) => setTimeout(r, 50))
    }
    const catchUpSeconds = round1((Date.now() - restartAt) / 1000)
    const stats = await getJson<{ blocks: number }>(`${back.apiUrl}/v1/dag/stats`)
    out(
      `   ${victim.name} holds all ${stats.blocks} blocks again, ${catchUpSeconds.toFixed(1)} s ` +
        'after its restart (process start included)',
    )
    let alert: DemoSummary['alert']
    if (am) {
      await waitAlert(am, victim.name, false, 90_000)
      const resolvedSeconds = round1((Date.now() - restartAt) / 1000)
      alert = { name: 'IcnNodeDown', firingSeconds, resolvedSeconds }
      out(
        `   alert IcnNodeDown for ${victim.name} resolved ${resolvedSeconds.toFixed(1)} s after the restart`,
      )
    }
    keep = opts.keep === true
    if (keep) {
      out(`\nThe devnet keeps running. Look around:`)
      out(`  bin/icn devnet status --dir ${dir}`)
      out(`  bin/icn mana accounts --data-dir ${join(dir, writer.name)}`)
      out(
        `  bin/icn mana transfer --member ${join(dir, 'members', transfer.to.member)} --to ${transfer.from.did} --amount 10`,
      )
      out(
        `  curl ${writer.apiUrl}/v1/peers ; curl ${writer.apiUrl}/v1/federation ; curl -N ${writer.apiUrl}/v1/events`,
      )
      out(`  bin/icn devnet down --dir ${dir} --clean`)
    }
    return {
      nodes: opts.nodes,
      dir,
      federation: status.federation,
      startup,
      propagation: { writer: writer.name, cid, arrivals },
      transfer,
      catchUp: {
        node: victim.name,
        blocksWhileDown: whileDown,
        seconds: catchUpSeconds,
        blocks: stats.blocks,
      },
      ...(alert ? { alert } : {}),
      kept: keep,
    }
  } finally {
    if (!keep) {
      await devnet.down({ clean: true })
      out('\nDevnet stopped and removed.')
    }
  }
}

interface AccountJson {
  did: string
  home: string
  balance: number
  sent: number
  received: number
  at: string
}

/**
 * Step 2: member1 (homed at node1) signs a transfer to member2 (homed at node2) with its own key and sends it to
 * its home node, which writes it on its ledger chain; then both accounts are read, as of the block's time, on a
 * node that wrote neither (the third; with 2 nodes, the payee's home), once the block has reached it and been
 * folded: the same figures as the home node's receipt.
 */
async function demoTransfer(nodes: DevnetNodeStatus[], out: (line: string) => void): Promise<DemoTransfer> {
  const [payerNode, payeeNode] = nodes as [DevnetNodeStatus, DevnetNodeStatus]
  const reader = nodes[2] ?? payeeNode
  if (!payerNode.member || !payeeNode.member)
    throw new Error(
      'this devnet has no founding members (made before devnets had them): run it in a new folder',
    )
  const payer = await readMemberDir(payerNode.member.dir)
  const payee = payeeNode.member.did
  const name = (dir: string): string => basename(dir)
  const [payerName, payeeName] = [name(payerNode.member.dir), name(payeeNode.member.dir)]
  out(
    `\n2. A member pays a member homed on another node: ${payerName} (homed at ${payerNode.name}) sends ` +
      `${DEMO_AMOUNT} mana to ${payeeName} (homed at ${payeeNode.name}):`,
  )
  // The member's folder records the devnet's passphrase file, so it opens without a prompt.
  const signer = await unlockMemberDir(
    payer,
    await resolvePassphrase({ passphraseFile: payer.passphraseFile, env: process.env, interactive: false }),
  )
  const federation = (await getJson<{ id: string }>(`${payerNode.apiUrl}/v1/federation`)).id
  const record = signRecord(signer, {
    kind: 'transfer',
    federation,
    member: payer.did,
    to: payee,
    amount: DEMO_AMOUNT,
    nonce: randomBytes(16).toString('base64url'),
    expires: Date.now() + 300_000,
  })
  const res = await fetch(`${payerNode.apiUrl}/v1/ledger/transfers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(recordToJson(record)),
    signal: AbortSignal.timeout(10_000),
  })
  if (res.status !== 201)
    throw new Error(`transfer on ${payerNode.name}: HTTP ${res.status} ${await res.text()}`)
  const receipt = (await res.json()) as {
    cid: string
    chain: string
    ts: string
    from: AccountJson
    to: AccountJson
  }
  const written = performance.now()
  out(
    `   ${payerNode.name} wrote it in ledger block ${receipt.cid} (${payerName} signed it) at ${receipt.ts}`,
  )
  const at = encodeURIComponent(receipt.ts)
  const read = (did: string): Promise<AccountJson> =>
    getJson<AccountJson>(`${reader.apiUrl}/v1/accounts/${encodeURIComponent(did)}?at=${at}`)
  const same = (a: AccountJson, b: AccountJson): boolean =>
    a.balance === b.balance && a.sent === b.sent && a.received === b.received
  for (;;) {
    const [from, to] = await Promise.all([read(payer.did), read(payee)])
    if (same(from, receipt.from) && same(to, receipt.to)) {
      const readAfterMs = round1(performance.now() - written)
      out(
        `   ${reader.name} shows, as of ${receipt.ts} (${readAfterMs.toFixed(1)} ms later): ` +
          `${payerName} ${from.balance}, ${payeeName} ${to.balance} (${payerNode.name} said the same)`,
      )
      const party = (member: string, a: AccountJson, home: DevnetNodeStatus): DemoParty => ({
        member,
        did: a.did,
        home: home.name,
        balance: a.balance,
        sent: a.sent,
        received: a.received,
      })
      return {
        amount: DEMO_AMOUNT,
        from: party(payerName, from, payerNode),
        to: party(payeeName, to, payeeNode),
        cid: receipt.cid,
        chain: receipt.chain,
        ts: receipt.ts,
        readOn: reader.name,
        readAfterMs,
      }
    }
    if (performance.now() - written > 30_000)
      throw new Error(`${reader.name} did not show the transfer ${receipt.cid} within 30 s`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Poll Alertmanager until IcnNodeDown for `node` is active (`active` true) or no longer is (false). */
async function waitAlert(
  alertmanager: string,
  node: string,
  active: boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const url = `${alertmanager}/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=${encodeURIComponent(
    `alertname="IcnNodeDown"`,
  )}&filter=${encodeURIComponent(`node="${node}"`)}`
  for (;;) {
    const alerts = await getJson<unknown[]>(url)
    if (alerts.length > 0 === active) return
    if (Date.now() > deadline)
      throw new Error(
        `IcnNodeDown for ${node} was ${active ? 'not active' : 'still active'} after ${timeoutMs / 1000} s`,
      )
    await new Promise((r) => setTimeout(r, 250))
  }
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`)
  return (await res.json()) as T
}

async function put(node: DevnetNodeStatus, value: unknown): Promise<{ cid: string }> {
  const res = await fetch(`${node.apiUrl}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${node.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value }),
    signal: AbortSignal.timeout(10_000),
  })
  if (res.status !== 201) throw new Error(`writing on ${node.name}: HTTP ${res.status} ${await res.text()}`)
  return (await res.json()) as { cid: string }
}

async function chains(node: DevnetNodeStatus): Promise<string> {
  return JSON.stringify(
    (await getJson<{ chains: { chain: string; seq: number }[] }>(`${node.apiUrl}/v1/dag/chains`)).chains
      .map((c) => `${c.chain}@${c.seq}`)
      .sort(),
  )
}

function sameChains(a: string, b: string): boolean {
  return a === b
}

/** Follow a node's /v1/events and resolve when a block event for `cid` arrives. */
function watchFor(node: DevnetNodeStatus): {
  ready: Promise<void>
  until: (cid: string, timeoutMs: number) => Promise<{ at: number; origin: string }>
  close: () => void
} {
  const ctl = new AbortController()
  const seen = new Map<string, { at: number; origin: string }>()
  const waiters = new Map<string, (v: { at: number; origin: string }) => void>()
  const ready = followEvents<{ type: string; cid?: string; origin?: string }>(
    node.apiUrl,
    ctl.signal,
    (ev, at) => {
      if (ev.type !== 'block' || !ev.cid) return
      const hit = { at, origin: ev.origin ?? '?' }
      seen.set(ev.cid, hit)
      waiters.get(ev.cid)?.(hit)
    },
  ).catch((err: Error) => {
    throw new Error(`${node.name}: ${err.message}`)
  })
  return {
    ready,
    until: (cid, timeoutMs) =>
      new Promise((resolve, reject) => {
        const hit = seen.get(cid)
        if (hit) return resolve(hit)
        const timer = setTimeout(
          () => reject(new Error(`${node.name} did not get ${cid} in ${timeoutMs} ms`)),
          timeoutMs,
        )
        waiters.set(cid, (v) => {
          clearTimeout(timer)
          resolve(v)
        })
      }),
    close: () => ctl.abort(),
  }
}
