// Render the shipped monitoring templates for deploy/compose.yaml (run by init.sh; plain Node, no dependencies):
//   node render.mjs DEPLOY_DIR OUT_DIR
// DEPLOY_DIR/prometheus/prometheus.yml → OUT_DIR/prometheus.yml (@FEDERATION@, @RULES_FILE@, @ALERTMANAGER@,
// @TARGETS_FILE@ filled in), DEPLOY_DIR/prometheus/alerts.yml → OUT_DIR/alerts.yml (as is),
// DEPLOY_DIR/alertmanager/alertmanager.yml → OUT_DIR/alertmanager.yml (@WEBHOOK_URL@ = ALERT_WEBHOOK_URL, or, without
// one, the webhook_configs block removed: alerts are then shown by Alertmanager only), and OUT_DIR/targets.json,
// the file_sd list of the NODES nodes (API_HOST with {n}/{node}, API_PORT), each labelled node="nodeK".
// Environment: NODES, API_HOST, API_PORT, FEDERATION, ALERT_WEBHOOK_URL, ALERTMANAGER (alertmanager:9093),
// MONITOR_DIR (where the prometheus service sees OUT_DIR: /etc/icn-monitor).
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const [deploy, out] = process.argv.slice(2)
if (!deploy || !out) {
  console.error('usage: node render.mjs DEPLOY_DIR OUT_DIR')
  process.exit(2)
}
const env = process.env
const nodes = Number(env.NODES ?? 10)
const monitorDir = env.MONITOR_DIR ?? '/etc/icn-monitor'
const fill = (template, k) => template.replaceAll('{n}', String(k)).replaceAll('{node}', `node${k}`)

// Fill @KEY@ fields outside comments (the templates' comments name the fields); any left unfilled is an error.
const replaceAll = (text, values) =>
  text
    .split('\n')
    .map((line) => {
      if (line.trimStart().startsWith('#')) return line
      for (const [k, v] of Object.entries(values)) line = line.replaceAll(`@${k}@`, v)
      const left = /@[A-Z_]+@/.exec(line)
      if (left) throw new Error(`render.mjs: ${left[0]} is not filled in`)
      return line
    })
    .join('\n')

const prometheus = replaceAll(readFileSync(join(deploy, 'prometheus', 'prometheus.yml'), 'utf8'), {
  FEDERATION: env.FEDERATION ?? 'compose',
  RULES_FILE: join(monitorDir, 'alerts.yml'),
  ALERTMANAGER: env.ALERTMANAGER ?? 'alertmanager:9093',
  TARGETS_FILE: join(monitorDir, 'targets.json'),
})
writeFileSync(join(out, 'prometheus.yml'), prometheus)
copyFileSync(join(deploy, 'prometheus', 'alerts.yml'), join(out, 'alerts.yml'))

let alertmanager = readFileSync(join(deploy, 'alertmanager', 'alertmanager.yml'), 'utf8')
if (env.ALERT_WEBHOOK_URL) alertmanager = replaceAll(alertmanager, { WEBHOOK_URL: env.ALERT_WEBHOOK_URL })
else {
  // drop each `webhook_configs:` line and the lines indented under it
  const lines = alertmanager.split('\n')
  const kept = []
  let inside = -1
  for (const line of lines) {
    const indent = line.search(/\S/)
    if (inside >= 0 && (indent < 0 || indent > inside)) continue
    inside = -1
    const m = /^(\s*)webhook_configs:/.exec(line)
    if (m) {
      inside = m[1].length
      continue
    }
    kept.push(line)
  }
  alertmanager = kept.join('\n').replace(/\n*$/, '\n')
}
writeFileSync(join(out, 'alertmanager.yml'), replaceAll(alertmanager, {}))

const targets = Array.from({ length: nodes }, (_, i) => ({
  targets: [`${fill(env.API_HOST ?? '{node}', i + 1)}:${env.API_PORT ?? 7420}`],
  labels: { node: `node${i + 1}` },
}))
writeFileSync(join(out, 'targets.json'), `${JSON.stringify(targets, null, 2)}\n`)
