/**
 * Test helpers for PromQL held in deploy/: pull the metric names out of an expression (a small lexer, enough
 * for the expressions we write: strings, label matchers, ranges and grouping clauses are dropped, then every
 * identifier that is not a function, an aggregation or a keyword is a metric name), substitute Grafana's
 * variables so Prometheus can parse a dashboard query, and run `promtool check rules` on a set of expressions.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'inf',
  'nan',
])

/** The metric names an expression reads (sorted, unique). */
export function metricNames(expr: string): string[] {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""') // string literals
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range and subquery selectors
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // grouping label lists
  s = s.replace(/\boffset\s+-?\d+[a-z]+/g, ' ')
  const names = new Set<string>()
  for (const m of s.matchAll(/(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    const [, word, call] = m
    if (!word || call || KEYWORDS.has(word.toLowerCase())) continue
    names.add(word)
  }
  return [...names].sort()
}

/** Grafana's built-in interval variables, and the value they stand for in a check. */
const INTERVALS: Record<string, string> = { __rate_interval: '5m', __interval: '1m', __range: '1h' }

/** The variables an expression uses (`$x` or `${x}`). */
export function variablesUsed(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\$\{?(\w+)\}?/g)].map((m) => m[1]!))].sort()
}

/** Replace Grafana variables: intervals by a duration, any other (used inside `=~"…"` matchers) by `.*`. */
export function substituteVariables(expr: string): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (_, name: string) => INTERVALS[name] ?? '.*')
}

/** A Grafana `label_values(selector, label)` variable query → its selector (PromQL); any other query as is. */
export function variableQueryExpr(query: string): string {
  const m = /^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$/.exec(query)
  return m ? m[1]! : query
}

/** The promtool binary, or undefined when it is not installed. */
export function promtool(): string | undefined {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' })
  return r.status === 0 ? 'promtool' : undefined
}

/**
 * Wrap each expression as a recording rule and run `promtool check rules` on them; returns promtool's output
 * (throws with it when promtool refuses the file).
 */
export function checkRules(exprs: { name: string; expr: string }[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'icn-promql-'))
  try {
    const file = join(dir, 'rules.yml')
    const rules = exprs.map((e, i) => ({
      record: `icn_check:expr_${i}`,
      expr: e.expr,
      labels: { source: e.name },
    }))
    writeFileSync(file, stringify({ groups: [{ name: 'checked', rules }] }))
    try {
      return execFileSync('promtool', ['check', 'rules', file], { encoding: 'utf8', stdio: 'pipe' })
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string }
      throw new Error(`promtool check rules failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Parse a Prometheus text exposition into the series names it can carry (histograms' and summaries' too). */
export function exportedNames(text: string): Set<string> {
  const names = new Set<string>()
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) (\w+)/.exec(line)
    if (m) {
      const [, name, type] = m as unknown as [string, string, string]
      names.add(name)
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s)
      if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s)
      continue
    }
    const sample = /^([a-zA-Z_:][\w:]*)[{ ]/.exec(line)
    if (sample) names.add(sample[1]!)
  }
  return names
}
