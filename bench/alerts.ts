/**
 * Alert latency benchmark: a monitored devnet (`Devnet.up({ monitor: true })`: real Prometheus and Alertmanager
 * with deploy/), a webhook receiver run here, then
 *   1. `restart` of a node (SIGTERM, start, ready): checks that it does not page (nothing delivered, never firing);
 *   2. SIGKILL of the node: time until Alertmanager delivers IcnNodeDown to the webhook, in parts (the scrape that
 *      finds it down, rule evaluation, the `for` duration, notification and group_wait);
 *   3. restart: time until the resolution is delivered, in parts.
 * The parts come from the timestamps Prometheus and Alertmanager report (the failed scrape's time from
 * /api/v1/targets, `activeAt` from /api/v1/alerts, the delivered alert's `startsAt` and `endsAt`). See
 * bench/README.md and docs/runbook.md "Alert timing".
 *
 *   npm run bench:alerts
 *   node dist/bench/alerts.js [--nodes 3] [--json] [--target 45]
 *
 * Exit 1 when kill → delivery exceeds --target seconds or the restart paged.
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Devnet } from '../src/devnet/index.js'

const { values: args } = parseArgs({
  options: {
    nodes: { type: 'string', default: '3' },
    target: { type: 'string', default: '45' },
    json: { type: 'boolean', default: false },
  },
})
const NODES = Number(args.nodes)
if (!Number.isSafeInteger(NODES) || NODES < 2) throw new Error('--nodes must be an integer >= 2')
const TARGET_S = Number(args.target)
const ALERT = 'IcnNodeDown'
/** After a restart, how long to watch for a page: `for` (20 s) + evaluation + group_wait + margin. */
const RESTART_WATCH_MS = 40_000
const log = (line: string): void => {
  process.stderr.write(`${line}\n`)
}

interface Delivery {
  receivedAt: number
  status: string
  alerts: { status: string; labels: Record<string, string>; startsAt: string; endsAt: string }[]
}

// ---- the webhook receiver ---------------------------------------------------------------------------------------
const deliveries: Delivery[] = []
const waiters = new Set<() => void>()
const server = createServer((req: IncomingMessage, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const receivedAt = Date.now()
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Omit<Delivery, 'receivedAt'>
      deliveries.push({ receivedAt, status: body.status, alerts: body.alerts })
      for (const w of waiters) w()
    } catch {}
    res.writeHead(200).end()
  })
})
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const addr = server.address()
const webhook = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/alerts`

/** The first delivery (from index `from` on) with an alert for `node` in `status`, within `timeoutMs`. */
async function delivered(
  node: string,
  status: 'firing' | 'resolved',
  from: number,
  timeoutMs: number,
): Promise<{ at: number; alert: Delivery['alerts'][number] } | undefined> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    for (const d of deliveries.slice(from)) {
      const alert = d.alerts.find(
        (a) => a.labels.alertname === ALERT && a.labels.node === node && a.status === status,
      )
      if (alert) return { at: d.receivedAt, alert }
    }
    const left = deadline - Date.now()
    if (left <= 0) return undefined
    await new Promise<void>((resolve) => {
      const done = (): void => {
        waiters.delete(done)
        clearTimeout(t)
        resolve()
      }
      const t = setTimeout(done, left)
      waiters.add(done)
    })
  }
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) })
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`)
  return (await res.json()) as T
}

interface Target {
  labels: Record<string, string>
  health: string
  lastScrape: string
}
async function target(prom: string, node: string): Promise<Target | undefined> {
  const r = await getJson<{ data: { activeTargets: Target[] } }>(`${prom}/api/v1/targets?state=active`)
  return r.data.activeTargets.find((t) => t.labels.node === node)
}

interface PromAlert {
  labels: Record<string, string>
  state: string
  activeAt: string
}
async function promAlert(prom: string, node: string): Promise<PromAlert | undefined> {
  const r = await getJson<{ data: { alerts: PromAlert[] } }>(`${prom}/api/v1/alerts`)
  return r.data.alerts.find((a) => a.labels.alertname === ALERT && a.labels.node === node)
}

/** Poll the target until its health is `health`; the time of that scrape. */
async function scrapeWith(
  prom: string,
  node: string,
  health: 'up' | 'down',
  timeoutMs: number,
): Promise<number> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const t = await target(prom, node)
    if (t?.health === health) return Date.parse(t.lastScrape)
    if (Date.now() > deadline)
      throw new Error(`${node}: no scrape with health ${health} within ${timeoutMs} ms`)
    await sleep(100)
  }
}

const s = (ms: number): number => Math.round(ms / 100) / 10

// ---- the run ----------------------------------------------------------------------------------------------------
const dir = await mkdtemp(join(tmpdir(), 'icn-bench-alerts-'))
let devnet: Devnet | undefined
let failed = false
try {
  log(`starting a monitored devnet of ${NODES} nodes in ${dir} (webhook ${webhook}) ...`)
  devnet = await Devnet.up({ dir, nodes: NODES, monitor: true, alertWebhook: webhook })
  const m = devnet.monitor!
  log(`Prometheus ${m.prometheus}, Alertmanager ${m.alertmanager}`)
  const victim = devnet.nodes[devnet.nodes.length - 1]!.name
  for (const n of devnet.nodes) await scrapeWith(m.prometheus, n.name, 'up', 30_000)
  log('every node scraped')

  // 1. A restart must not page.
  log(`\n1. ${victim} restarts (icn devnet restart): must not page`)
  const r0 = Date.now()
  const mark0 = deliveries.length
  await devnet.restart(victim)
  const restartMs = Date.now() - r0
  let wentPending = false
  let wentFiring = false
  const watchEnd = Date.now() + RESTART_WATCH_MS
  while (Date.now() < watchEnd) {
    const a = await promAlert(m.prometheus, victim)
    if (a) wentPending = true
    if (a?.state === 'firing') wentFiring = true
    await sleep(250)
  }
  const paged = (await delivered(victim, 'firing', mark0, 0)) !== undefined
  log(
    `   restart took ${s(restartMs)} s; alert ${wentPending ? 'went pending' : 'never pending'}, ` +
      `${wentFiring ? 'FIRED' : 'never fired'}; ${paged ? 'PAGED' : 'nothing delivered'} in ${RESTART_WATCH_MS / 1000} s`,
  )
  if (paged || wentFiring) failed = true

  // 2. Kill → delivery.
  log(`\n2. ${victim} is killed (SIGKILL): time until Alertmanager delivers ${ALERT}`)
  const mark1 = deliveries.length
  const tKill = Date.now()
  await devnet.kill(victim)
  const tDownScrape = await scrapeWith(m.prometheus, victim, 'down', 30_000)
  let activeAt: number | undefined
  while (activeAt === undefined) {
    const a = await promAlert(m.prometheus, victim)
    if (a) activeAt = Date.parse(a.activeAt)
    else await sleep(100)
  }
  const fire = await delivered(victim, 'firing', mark1, 90_000)
  if (!fire) throw new Error(`${ALERT} for ${victim} was not delivered within 90 s of the kill`)
  const firedAt = Date.parse(fire.alert.startsAt)
  const kill = {
    totalSeconds: s(fire.at - tKill),
    scrapeSeconds: s(tDownScrape - tKill),
    evaluationSeconds: s(activeAt - tDownScrape),
    forSeconds: s(firedAt - activeAt),
    notifyAndGroupWaitSeconds: s(fire.at - firedAt),
  }
  log(
    `   delivered ${kill.totalSeconds} s after the kill: scrape ${kill.scrapeSeconds} s + evaluation ` +
      `${kill.evaluationSeconds} s + for ${kill.forSeconds} s + notification and group_wait ` +
      `${kill.notifyAndGroupWaitSeconds} s (target < ${TARGET_S} s)`,
  )
  if (kill.totalSeconds >= TARGET_S) failed = true

  // 3. Restart → resolved.
  log(`\n3. ${victim} restarts: time until the resolution is delivered`)
  const mark2 = deliveries.length
  const tRestart = Date.now()
  // Watched from the restart on: the node answers /metrics before `restart` sees it ready and connected.
  const upScrape = scrapeWith(m.prometheus, victim, 'up', 60_000)
  await devnet.restart(victim)
  const tReady = Date.now()
  const tUpScrape = await upScrape
  const res = await delivered(victim, 'resolved', mark2, 90_000)
  if (!res) throw new Error(`the resolution of ${ALERT} for ${victim} was not delivered within 90 s`)
  const resolvedAt = Date.parse(res.alert.endsAt)
  const resolve = {
    totalSeconds: s(res.at - tRestart),
    restartToReadySeconds: s(tReady - tRestart),
    firstScrapeSeconds: s(tUpScrape - tRestart),
    evaluationSeconds: s(resolvedAt - tUpScrape),
    notifyAndGroupIntervalSeconds: s(res.at - resolvedAt),
  }
  log(
    `   resolved ${resolve.totalSeconds} s after the restart: first good scrape ${resolve.firstScrapeSeconds} s ` +
      `+ evaluation ${resolve.evaluationSeconds} s + notification and group_interval ` +
      `${resolve.notifyAndGroupIntervalSeconds} s (the node was ready and connected ` +
      `${resolve.restartToReadySeconds} s after the restart began)`,
  )
  const result = {
    nodes: NODES,
    settings: {
      scrapeIntervalSeconds: 5,
      evaluationIntervalSeconds: 5,
      forSeconds: 20,
      groupWaitSeconds: 5,
      groupIntervalSeconds: 10,
    },
    restartDoesNotPage: { restartSeconds: s(restartMs), pending: wentPending, fired: wentFiring, paged },
    killToDelivery: kill,
    restartToResolved: resolve,
    targetSeconds: TARGET_S,
    ok: !failed,
  }
  if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
  else
    log(
      `\n${failed ? 'FAILED' : 'OK'}: kill → delivery ${kill.totalSeconds} s, restart → resolved ${resolve.totalSeconds} s`,
    )
} finally {
  await devnet?.down({ clean: true })
  await rm(dir, { recursive: true, force: true })
  server.close()
}
process.exitCode = failed ? 1 : 0
