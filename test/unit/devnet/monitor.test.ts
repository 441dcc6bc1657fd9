/**
 * The pure parts of `--monitor`: filling in the configuration templates (the filled files are checked by
 * promtool and amtool in test/unit/deploy/prometheus.test.ts), the targets file, and finding the binaries.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  findMonitorBinaries,
  renderAlertmanagerConfig,
  renderPrometheusConfig,
  renderTargets,
} from '../../../src/devnet/index.js'

const PROM_TEMPLATE = [
  'global:',
  "  external_labels: { federation: '@FEDERATION@' }",
  "rule_files: ['@RULES_FILE@']",
  "alerting: { alertmanagers: [{ static_configs: [{ targets: ['@ALERTMANAGER@'] }] }] }",
  "scrape_configs: [{ job_name: icn, file_sd_configs: [{ files: ['@TARGETS_FILE@'] }] }]",
  '',
].join('\n')

describe('renderPrometheusConfig', () => {
  it('fills in every field, quoted for YAML', () => {
    const out = renderPrometheusConfig(PROM_TEMPLATE, {
      federation: "it's",
      rulesFile: '/a/alerts.yml',
      alertmanager: '127.0.0.1:9093',
      targetsFile: '/a/targets.json',
    })
    expect(out).toContain("federation: 'it''s'")
    expect(out).toContain("rule_files: ['/a/alerts.yml']")
    expect(out).toContain("targets: ['127.0.0.1:9093']")
    expect(out).toContain("files: ['/a/targets.json']")
    expect(out).not.toContain('@')
  })

  it('throws for a template that lacks a field', () => {
    expect(() =>
      renderPrometheusConfig('global: {}\n', {
        federation: 'f',
        rulesFile: 'r',
        alertmanager: 'a',
        targetsFile: 't',
      }),
    ).toThrow(/no '@FEDERATION@'/)
  })
})

describe('renderAlertmanagerConfig', () => {
  const template = [
    'route: { receiver: icn }',
    'receivers:',
    '  - name: icn',
    '    webhook_configs:',
    "      - url: '@WEBHOOK_URL@'",
    '        send_resolved: true',
    '',
  ].join('\n')

  it('with a webhook: the URL filled in', () => {
    expect(renderAlertmanagerConfig(template, { webhookUrl: 'http://127.0.0.1:1/x' })).toContain(
      "url: 'http://127.0.0.1:1/x'",
    )
  })

  it('without: the webhook_configs block removed, the receiver kept', () => {
    expect(renderAlertmanagerConfig(template, {})).toBe(
      'route: { receiver: icn }\nreceivers:\n  - name: icn\n',
    )
  })

  it('a webhook that is not http(s) is an InvalidOptionError', () => {
    for (const webhookUrl of ['file:///etc/passwd', 'nope', ''])
      expect(() => renderAlertmanagerConfig(template, { webhookUrl })).toThrow(
        expect.objectContaining({ code: 'INVALID_OPTION' }),
      )
  })
})

describe('renderTargets', () => {
  it('one group per node: host:port of its API, labelled with its name', () => {
    expect(
      JSON.parse(
        renderTargets([
          { name: 'node1', apiUrl: 'http://127.0.0.1:7001' },
          { name: 'node2', apiUrl: 'http://127.0.0.1:7003' },
        ]),
      ),
    ).toEqual([
      { targets: ['127.0.0.1:7001'], labels: { node: 'node1' } },
      { targets: ['127.0.0.1:7003'], labels: { node: 'node2' } },
    ])
  })
})

describe('findMonitorBinaries', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'icn-monbin-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function exe(name: string): Promise<string> {
    const path = join(dir, name)
    await writeFile(path, '#!/bin/sh\n')
    await chmod(path, 0o755)
    return path
  }

  it('names the Debian packages of what is missing', async () => {
    const empty = join(dir, 'empty')
    expect(() => findMonitorBinaries({ PATH: empty })).toThrow(
      expect.objectContaining({
        code: 'MONITOR_BINARY_MISSING',
        message: expect.stringContaining('apt-get install -y prometheus prometheus-alertmanager'),
      }),
    )
    await exe('prometheus')
    expect(() => findMonitorBinaries({ PATH: dir })).toThrow(
      expect.objectContaining({
        code: 'MONITOR_BINARY_MISSING',
        message: expect.stringContaining('apt-get install -y prometheus-alertmanager`'),
      }),
    )
  })

  it("finds both, Debian's prometheus-alertmanager or a plain alertmanager", async () => {
    const prom = await exe('prometheus')
    const am = await exe('alertmanager')
    expect(findMonitorBinaries({ PATH: `${join(dir, 'none')}:${dir}` })).toEqual({
      prometheus: prom,
      alertmanager: am,
    })
    const debian = await exe('prometheus-alertmanager')
    expect(findMonitorBinaries({ PATH: dir }).alertmanager).toBe(debian)
  })

  it('a file that is not executable does not count', async () => {
    const sub = join(dir, 'noexec')
    await (await import('node:fs/promises')).mkdir(sub)
    await writeFile(join(sub, 'prometheus'), '')
    await writeFile(join(sub, 'alertmanager'), '')
    expect(() => findMonitorBinaries({ PATH: sub })).toThrow(
      expect.objectContaining({ code: 'MONITOR_BINARY_MISSING' }),
    )
  })
})
