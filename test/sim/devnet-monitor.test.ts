/**
 * `icn devnet up --monitor` with real processes: Prometheus (Debian's `prometheus`) and Alertmanager (Debian's
 * `prometheus-alertmanager`) start on free 127.0.0.1 ports, Prometheus scrapes every node (its
 * /api/v1/targets) with the shipped rules loaded and the Alertmanager attached, `status --json` shows both, and
 * `down` stops them with the nodes. Without the binaries, `up --monitor` names the Debian packages and starts
 * nothing. Skipped (with a line saying so) when Prometheus is not installed, except under CI=true.
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { killAll, removeTempDirs, runCli, tempDir } from '../helpers/process.js'

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => {
    try {
      accessSync(join(d, name), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}
const installed = onPath('prometheus') && (onPath('prometheus-alertmanager') || onPath('alertmanager'))
if (!installed && process.env.CI !== 'true')
  process.stderr.write(
    '\n*** SKIPPED test/sim/devnet-monitor.test.ts: prometheus / prometheus-alertmanager not installed ' +
      '(apt-get install -y prometheus prometheus-alertmanager) ***\n\n',
  )

interface Service {
  url: string
  pid: number | null
  running: boolean
  ready: boolean
}
interface Status {
  nodes: { name: string; apiUrl: string; pid: number | null }[]
  prometheus: Service | null
  alertmanager: Service | null
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5_000) })
  expect(res.status, url).toBe(200)
  return (await res.json()) as T
}

describe('icn devnet up --monitor, missing binaries', () => {
  afterAll(removeTempDirs)

  it('names the Debian packages, exits non-zero and creates nothing', async () => {
    const dir = join(await tempDir('icn-devnet-nomon-'), 'net')
    const r = await runCli(['devnet', 'up', '--nodes', '1', '--dir', dir, '--monitor'], {
      env: { PATH: '/nonexistent' },
      timeoutMs: 30_000,
    })
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('apt-get install -y prometheus prometheus-alertmanager')
    expect(r.stderr).toContain('MONITOR_BINARY_MISSING')
    expect(existsSync(dir)).toBe(false)
  })

  it('--alert-webhook without --monitor is a usage error', async () => {
    const dir = join(await tempDir('icn-devnet-nomon-'), 'net')
    const r = await runCli([
      'devnet',
      'up',
      '--nodes',
      '1',
      '--dir',
      dir,
      '--alert-webhook',
      'http://127.0.0.1:1/x',
    ])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--alert-webhook is only used with --monitor')
    expect(existsSync(dir)).toBe(false)
  })
})

describe.skipIf(!installed && process.env.CI !== 'true')('icn devnet up --monitor', () => {
  let dir: string
  let status: Status
  const pids: number[] = []

  beforeAll(async () => {
    dir = join(await tempDir('icn-devnet-mon-'), 'net')
  })
  afterAll(async () => {
    await runCli(['devnet', 'down', '--dir', dir, '--clean'], { timeoutMs: 60_000 }).catch(() => {})
    await killAll()
    await removeTempDirs()
  })

  it('starts Prometheus and Alertmanager and prints their URLs', async () => {
    const r = await runCli(['devnet', 'up', '--nodes', '2', '--dir', dir, '--monitor', '--json'], {
      timeoutMs: 90_000,
    })
    expect(r.code, r.stderr).toBe(0)
    status = JSON.parse(r.stdout) as Status
    for (const s of [status.prometheus, status.alertmanager]) {
      expect(s?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      expect(s?.running).toBe(true)
      expect(s?.ready).toBe(true)
      pids.push(s!.pid!)
    }
    expect(r.stderr).toContain(`Prometheus ${status.prometheus!.url}`)
    expect(r.stderr).toContain(`Alertmanager ${status.alertmanager!.url}`)
  })

  it('Prometheus scrapes every node, with the rules loaded and the Alertmanager attached', async () => {
    const prom = status.prometheus!.url
    const want = status.nodes.map((n) => ({ node: n.name, instance: new URL(n.apiUrl).host }))
    let targets: { labels: Record<string, string>; health: string; lastError: string }[] = []
    for (let i = 0; i < 150; i++) {
      targets = (await getJson<{ data: { activeTargets: typeof targets } }>(`${prom}/api/v1/targets`)).data
        .activeTargets
      if (targets.length === want.length && targets.every((t) => t.health === 'up')) break
      await sleep(200)
    }
    expect(
      targets.map((t) => ({
        node: t.labels.node,
        instance: t.labels.instance,
        job: t.labels.job,
        health: t.health,
      })),
    ).toEqual(expect.arrayContaining(want.map((w) => ({ ...w, job: 'icn', health: 'up' }))))
    expect(targets).toHaveLength(want.length)

    const rules = await getJson<{ data: { groups: { rules: { name: string }[] }[] } }>(`${prom}/api/v1/rules`)
    const names = rules.data.groups.flatMap((g) => g.rules.map((r) => r.name))
    expect(names).toContain('IcnNodeDown')
    expect(names.length).toBeGreaterThanOrEqual(14)

    const ams = await getJson<{ data: { activeAlertmanagers: { url: string }[] } }>(
      `${prom}/api/v1/alertmanagers`,
    )
    expect(ams.data.activeAlertmanagers.map((a) => a.url)).toContain(
      `${status.alertmanager!.url}/api/v2/alerts`,
    )
    // The node's series reached Prometheus with their node label.
    const q = await getJson<{ data: { result: { metric: Record<string, string> }[] } }>(
      `${prom}/api/v1/query?query=${encodeURIComponent('icn_peers_connected')}`,
    )
    expect(q.data.result.map((r) => r.metric.node).sort()).toEqual(['node1', 'node2'])
  })

  it('status --json shows both', async () => {
    const r = await runCli(['devnet', 'status', '--dir', dir, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const s = JSON.parse(r.stdout) as Status
    expect(s.prometheus).toEqual({ ...status.prometheus, ready: true, running: true })
    expect(s.alertmanager).toEqual({ ...status.alertmanager, ready: true, running: true })
    const text = await runCli(['devnet', 'status', '--dir', dir])
    expect(text.stdout).toContain(`Prometheus:   ${status.prometheus!.url} (ready)`)
  })

  it('down stops them with the nodes', async () => {
    const r = await runCli(['devnet', 'down', '--dir', dir, '--json'], { timeoutMs: 60_000 })
    expect(r.code, r.stderr).toBe(0)
    const down = JSON.parse(r.stdout) as { monitorStopped: { service: string; pid: number }[] }
    expect(down.monitorStopped.map((m) => m.service).sort()).toEqual(['alertmanager', 'prometheus'])
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false)
    const s = JSON.parse((await runCli(['devnet', 'status', '--dir', dir, '--json'])).stdout) as Status
    expect(s.prometheus).toMatchObject({ running: false, ready: false, pid: null })
    expect(s.alertmanager).toMatchObject({ running: false, ready: false, pid: null })
    const state = JSON.parse(readFileSync(join(dir, 'devnet.json'), 'utf8')) as { monitor?: unknown }
    expect(state.monitor).toBeDefined()
  })
})
