/**
 * The shipped monitoring configuration, checked by the tools that will read it: `promtool check rules` on
 * deploy/prometheus/alerts.yml, `promtool test rules` on deploy/prometheus/tests/ (every rule has cases that fire
 * it and cases that must not), `promtool check config` on the template as the devnet fills it in, and
 * `amtool check-config` on deploy/alertmanager/alertmanager.yml filled in with and without a webhook. Every rule
 * carries severity and component labels and a runbook link to a section that docs/runbook.md has.
 *
 * promtool comes with Debian's `prometheus`, amtool with `prometheus-alertmanager`; CI (.ci/run) installs them.
 * Under CI=true a missing tool fails the test; elsewhere the tests are skipped with a line saying what to install.
 */
import { execFile } from 'node:child_process'
import { accessSync, constants, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { renderAlertmanagerConfig, renderPrometheusConfig, renderTargets } from '../../../src/devnet/index.js'
import { REPO_ROOT } from '../../helpers/process.js'

const run = promisify(execFile)
const DEPLOY = join(REPO_ROOT, 'deploy')
const RULES = join(DEPLOY, 'prometheus', 'alerts.yml')
const RULE_TESTS = join(DEPLOY, 'prometheus', 'tests')

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {}
  }
  return undefined
}

const promtool = which('promtool')
const amtool = which('amtool')
const inCi = process.env.CI === 'true'

/** Run a tool; on failure, the error carries its output so the test failure shows promtool's words. */
async function tool(bin: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(bin, args, { timeout: 60_000 })
    return stdout + stderr
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string }
    throw new Error(`${bin} ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`)
  }
}

interface Rule {
  alert?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

/** The rules of alerts.yml (read with the `yaml` package, already in node_modules through the dev tools). */
async function loadRules(): Promise<Rule[]> {
  const { parse } = await import('yaml')
  const doc = parse(await readFile(RULES, 'utf8')) as { groups: { rules: Rule[] }[] }
  return doc.groups.flatMap((g) => g.rules)
}

describe('monitoring tools', () => {
  it('promtool and amtool are installed (CI installs them; locally: apt-get install -y prometheus prometheus-alertmanager)', () => {
    if (!promtool || !amtool) {
      const missing = [
        !promtool && 'promtool (Debian package prometheus)',
        !amtool && 'amtool (Debian package prometheus-alertmanager)',
      ]
        .filter(Boolean)
        .join(' and ')
      const message = `${missing} not on PATH: the alert rule tests cannot run (apt-get install -y prometheus prometheus-alertmanager)`
      if (inCi) throw new Error(message)
      process.stderr.write(`\n*** SKIPPED: ${message} ***\n\n`)
    }
    expect(true).toBe(true)
  })
})

describe.skipIf(!promtool && !inCi)('deploy/prometheus (promtool)', () => {
  let tmp: string
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'icn-promtool-'))
  })
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true })
  })

  it('promtool check rules accepts alerts.yml', async () => {
    const out = await tool(promtool!, ['check', 'rules', RULES])
    expect(out).toMatch(/SUCCESS: \d+ rules found/)
  })

  it('promtool test rules: every case passes', async () => {
    const files = (await import('node:fs')).readdirSync(RULE_TESTS).filter((f) => f.endsWith('.yml'))
    expect(files.length).toBeGreaterThan(0)
    const out = await tool(promtool!, ['test', 'rules', ...files.map((f) => join(RULE_TESTS, f))])
    expect(out).toContain('SUCCESS')
    expect(out).not.toContain('FAILED')
  })

  it('promtool test rules fails a case whose expectation is wrong (the tests can fail)', async () => {
    const broken = join(tmp, 'broken.test.yml')
    await writeFile(
      broken,
      [
        `rule_files: [${JSON.stringify(RULES)}]`,
        'evaluation_interval: 5s',
        'tests:',
        '  - interval: 5s',
        '    input_series:',
        `      - series: 'up{job="icn", instance="a", node="node1"}'`,
        `        values: '1x20'`,
        '    alert_rule_test:',
        '      - eval_time: 60s',
        '        alertname: IcnNodeDown',
        '        exp_alerts:',
        '          - exp_labels: { severity: critical, component: node, job: icn, instance: a, node: node1 }',
        '',
      ].join('\n'),
    )
    await expect(tool(promtool!, ['test', 'rules', broken])).rejects.toThrow(/FAILED/)
  })

  it('every rule has a test case, severity and component labels, and a runbook section', async () => {
    const rules = await loadRules()
    const tests = (await import('node:fs'))
      .readdirSync(RULE_TESTS)
      .map((f) => readFileSync(join(RULE_TESTS, f), 'utf8'))
      .join('\n')
    const runbook = readFileSync(join(REPO_ROOT, 'docs', 'runbook.md'), 'utf8')
    const anchors = new Set(
      [...runbook.matchAll(/^#{2,3} (.+)$/gm)].map((m) =>
        m[1]!
          .trim()
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      ),
    )
    expect(rules.length).toBeGreaterThanOrEqual(14)
    for (const r of rules) {
      expect(r.alert, 'every rule is an alert').toBeTruthy()
      expect(['critical', 'warning'], `${r.alert} severity`).toContain(r.labels?.severity)
      expect(r.labels?.component, `${r.alert} component`).toMatch(/^[a-z]+$/)
      const url = r.annotations?.runbook_url ?? ''
      expect(url, `${r.alert} runbook_url`).toMatch(/^docs\/runbook\.md#[a-z0-9-]+$/)
      expect(anchors, `docs/runbook.md has a section for ${r.alert}`).toContain(url.split('#')[1])
      // A case that fires it (exp_alerts with labels) and one that must not (exp_alerts: []).
      const cases = tests.split(/\n(?= {6}- eval_time:)/).filter((c) => c.includes(`alertname: ${r.alert}\n`))
      expect(
        cases.some((c) => /exp_alerts: \[\]/.test(c)),
        `${r.alert} has a must-not-fire case`,
      ).toBe(true)
      expect(
        cases.some((c) => /exp_labels:/.test(c)),
        `${r.alert} has a firing case`,
      ).toBe(true)
    }
  })

  it('promtool check config accepts the template as the devnet fills it in', async () => {
    const targets = join(tmp, 'targets.json')
    await writeFile(targets, renderTargets([{ name: 'node1', apiUrl: 'http://127.0.0.1:7001' }]))
    const config = join(tmp, 'prometheus.yml')
    await writeFile(
      config,
      renderPrometheusConfig(readFileSync(join(DEPLOY, 'prometheus', 'prometheus.yml'), 'utf8'), {
        federation: "bafy-it's",
        rulesFile: RULES,
        alertmanager: '127.0.0.1:9093',
        targetsFile: targets,
      }),
    )
    const out = await tool(promtool!, ['check', 'config', config])
    expect(out).toContain('SUCCESS')
    // The rules file it names was found and checked too.
    expect(out).toMatch(/SUCCESS: \d+ rules found/)
  })

  it('the template without its fields filled in is refused by promtool (the check can fail)', async () => {
    await expect(
      tool(promtool!, ['check', 'config', join(DEPLOY, 'prometheus', 'prometheus.yml')]),
    ).rejects.toThrow(/FAILED/)
  })
})

describe.skipIf(!amtool && !inCi)('deploy/alertmanager (amtool)', () => {
  let tmp: string
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'icn-amtool-'))
  })
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true })
  })
  const template = (): string => readFileSync(join(DEPLOY, 'alertmanager', 'alertmanager.yml'), 'utf8')

  it('amtool check-config accepts it with a webhook and without', async () => {
    for (const [name, webhookUrl] of [
      ['with.yml', 'http://127.0.0.1:9999/alerts'],
      ['without.yml', undefined],
    ] as const) {
      const path = join(tmp, name)
      const text = renderAlertmanagerConfig(template(), webhookUrl ? { webhookUrl } : {})
      await writeFile(path, text)
      const out = await tool(amtool!, ['check-config', path])
      expect(out).toContain('SUCCESS')
      if (webhookUrl) expect(text).toContain(`url: '${webhookUrl}'`)
      else expect(text).not.toMatch(/^ +webhook_configs:/m)
    }
  })

  it('a webhook that is not an http(s) URL is an InvalidOptionError', () => {
    expect(() => renderAlertmanagerConfig(template(), { webhookUrl: 'ftp://x' })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    )
    expect(() => renderAlertmanagerConfig(template(), { webhookUrl: 'not a url' })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION' }),
    )
  })
})
