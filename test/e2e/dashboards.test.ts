/**
 * Dashboards that cannot rot: every PromQL expression in deploy/grafana/dashboards/*.json and in
 * deploy/prometheus/alerts.yml (when that file exists) must parse (`promtool check rules`, each wrapped as a
 * recording rule) and must read only metrics that a running node of a federation exports on /metrics.
 * Grafana itself is not installable here; this test is what keeps the dashboards true.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { type Harness, startHarness } from '../helpers/harness.js'
import {
  checkRules,
  exportedNames,
  metricNames,
  promtool,
  substituteVariables,
  variableQueryExpr,
  variablesUsed,
} from '../helpers/promql.js'

const ROOT = join(import.meta.dirname, '..', '..')
const DASHBOARDS = join(ROOT, 'deploy', 'grafana', 'dashboards')
const ALERTS = join(ROOT, 'deploy', 'prometheus', 'alerts.yml')
const DATASOURCES = join(ROOT, 'deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml')

/** Series Prometheus itself makes (never on a node's /metrics): scrape health and the alerts' state. */
const SYNTHETIC = new Set([
  'up',
  'ALERTS',
  'ALERTS_FOR_STATE',
  'scrape_duration_seconds',
  'scrape_samples_scraped',
])
/** Grafana's built-in variables. */
const BUILTIN_VARIABLES = new Set(['__rate_interval', '__interval', '__range', '__all'])

interface Expr {
  /** Where it comes from: `<file> › <panel or rule>`. */
  name: string
  expr: string
}

interface Panel {
  title?: string
  type?: string
  datasource?: { type?: string; uid?: string }
  targets?: { expr?: string; datasource?: { type?: string; uid?: string } }[]
  panels?: Panel[]
}

interface Dashboard {
  uid: string
  title: string
  panels: Panel[]
  templating?: { list: { name: string; query?: string | { query: string }; datasource?: { uid?: string } }[] }
}

function loadDashboards(): { file: string; dashboard: Dashboard }[] {
  return readdirSync(DASHBOARDS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({
      file,
      dashboard: JSON.parse(readFileSync(join(DASHBOARDS, file), 'utf8')) as Dashboard,
    }))
}

function panelsOf(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...panelsOf(p.panels ?? [])])
}

function dashboardExprs(): Expr[] {
  const out: Expr[] = []
  for (const { file, dashboard } of loadDashboards()) {
    for (const p of panelsOf(dashboard.panels))
      for (const t of p.targets ?? []) if (t.expr) out.push({ name: `${file} › ${p.title}`, expr: t.expr })
    for (const v of dashboard.templating?.list ?? []) {
      const q = typeof v.query === 'string' ? v.query : v.query?.query
      if (q) out.push({ name: `${file} › variable ${v.name}`, expr: variableQueryExpr(q) })
    }
  }
  return out
}

interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string | number }[] }[]
}

function alertRules(): RuleFile | undefined {
  return existsSync(ALERTS) ? (parse(readFileSync(ALERTS, 'utf8')) as RuleFile) : undefined
}

function ruleExprs(): Expr[] {
  const rules = alertRules()
  if (!rules) return []
  return rules.groups.flatMap((g) =>
    g.rules.map((r) => ({ name: `alerts.yml › ${r.alert ?? r.record}`, expr: String(r.expr) })),
  )
}

describe('Grafana dashboards and alert rules', () => {
  const dashboards = loadDashboards()
  const exprs = [...dashboardExprs(), ...ruleExprs()]

  it('has the overview, network, store and API, and ledger dashboards, each with panels and a unique uid', () => {
    expect(dashboards.map((d) => d.file)).toEqual([
      'ledger.json',
      'network.json',
      'overview.json',
      'store-api.json',
    ])
    const uids = dashboards.map((d) => d.dashboard.uid)
    expect(new Set(uids).size).toBe(uids.length)
    for (const { dashboard } of dashboards) expect(panelsOf(dashboard.panels).length).toBeGreaterThan(5)
    // and the alert rules are read when they exist (MON's deploy/prometheus/alerts.yml)
    if (existsSync(ALERTS)) expect(ruleExprs().length).toBeGreaterThan(0)
  })

  it('names the provisioned Prometheus datasource on every panel, query and variable', () => {
    const ds = parse(readFileSync(DATASOURCES, 'utf8')) as { datasources: { uid: string; type: string }[] }
    const uids = new Set(ds.datasources.filter((d) => d.type === 'prometheus').map((d) => d.uid))
    expect(uids.size).toBe(1)
    for (const { file, dashboard } of dashboards) {
      for (const p of panelsOf(dashboard.panels)) {
        if (!p.targets) continue
        expect(uids.has(p.datasource?.uid ?? ''), `${file} › ${p.title}`).toBe(true)
        for (const t of p.targets)
          expect(uids.has(t.datasource?.uid ?? ''), `${file} › ${p.title}`).toBe(true)
      }
      for (const v of dashboard.templating?.list ?? [])
        expect(uids.has(v.datasource?.uid ?? ''), `${file} › $${v.name}`).toBe(true)
    }
  })

  it('uses only variables the dashboard defines (or Grafana built-ins)', () => {
    for (const { file, dashboard } of dashboards) {
      const defined = new Set((dashboard.templating?.list ?? []).map((v) => v.name))
      for (const p of panelsOf(dashboard.panels))
        for (const t of p.targets ?? [])
          for (const v of variablesUsed(t.expr ?? ''))
            expect(defined.has(v) || BUILTIN_VARIABLES.has(v), `${file} › ${p.title}: $${v}`).toBe(true)
    }
  })

  it('every expression parses (promtool check rules, each wrapped as a recording rule)', (ctx) => {
    if (!promtool()) {
      // CI installs Debian's prometheus package (.ci/run); there a missing promtool is a failure, not a skip.
      if (process.env.CI === 'true') throw new Error('promtool not found: apt-get install -y prometheus')
      ctx.skip()
    }
    const out = checkRules(exprs.map((e) => ({ name: e.name, expr: substituteVariables(e.expr) })))
    expect(out).toContain(`${exprs.length} rules found`)
  })

  it('promtool refuses an expression that does not parse (the check can fail)', (ctx) => {
    if (!promtool()) {
      if (process.env.CI === 'true') throw new Error('promtool not found: apt-get install -y prometheus')
      ctx.skip()
    }
    expect(() =>
      checkRules([{ name: 'bad', expr: 'sum by (instance (rate(icn_sync_blocks_total[5m]))' }]),
    ).toThrow(/promtool check rules failed/)
  })

  it('extracts metric names from PromQL (and not functions, labels, strings or keywords)', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{job=~"$job",x="b_total"}[5m]))) ' +
          '/ on(instance) group_left(peer) b_total offset 5m > bool 1e-9 unless absent(c:rec) or max without (d) (e)',
      ),
    ).toEqual(['a_bucket', 'b_total', 'c:rec', 'e'])
    expect(metricNames('sum(increase(icn_dag_equivocations_total[1h])) > 0')).toEqual([
      'icn_dag_equivocations_total',
    ])
  })

  describe('against a running node of a federation', () => {
    let h: Harness
    let exported: Set<string>

    beforeAll(async () => {
      h = await startHarness({ nodes: 2 })
      await h.waitConnected()
      const res = await fetch(`${h.node(0).apiUrl}/metrics`)
      expect(res.status).toBe(200)
      exported = exportedNames(await res.text())
    }, 60_000)

    afterAll(async () => {
      await h?.close()
    })

    it('exports the families the dashboards are built on (process, nodejs, icn, ledger)', () => {
      for (const name of [
        'process_resident_memory_bytes',
        'nodejs_eventloop_lag_p99_seconds',
        'icn_http_request_duration_seconds_bucket',
        'icn_peers_connected',
        'icn_ledger_transfers_total',
      ])
        expect(exported.has(name), name).toBe(true)
      expect(exported.has('icn_no_such_metric_total')).toBe(false)
    })

    it('every metric an expression reads is exported on /metrics (or recorded by a rule, or made by Prometheus)', () => {
      const recorded = new Set(
        (alertRules()?.groups ?? []).flatMap((g) => g.rules.flatMap((r) => (r.record ? [r.record] : []))),
      )
      const missing: string[] = []
      for (const e of exprs)
        for (const name of metricNames(substituteVariables(e.expr)))
          if (!exported.has(name) && !recorded.has(name) && !SYNTHETIC.has(name))
            missing.push(`${e.name}: ${name}`)
      expect(missing).toEqual([])
      // the check reads something: every dashboard panel names at least one metric
      for (const e of exprs) expect(metricNames(e.expr).length, e.name).toBeGreaterThan(0)
    })
  })
})
