/**
 * docs/deployment.md, run: every fenced block marked `sh test machine=M` is run in order in bash, with this
 * checkout's bin/icn as `icn`, on "machine" M: its own home folder and its own loopback address (solo is
 * 127.0.0.10, a is 127.0.0.11 = the doc's 10.0.0.1, b is 127.0.0.12 = 10.0.0.2; 127.0.0.1 and 0.0.0.0 in M's
 * block are M's address), `scp FILES HOST:` being a copy into that machine's home, and `icn node start …` run in
 * the background until the node answers (`icn node info`). Blocks marked `sh readme` must be the README's
 * commands; `sh untested` blocks must say which test covers their files. Then the federation the doc built is
 * checked: B is connected to A and a block written on A arrives on B.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { until } from '../helpers/harness.js'

const ROOT = join(import.meta.dirname, '..', '..')
const DOC = join(ROOT, 'docs', 'deployment.md')
const MACHINES: Record<string, string> = { solo: '127.0.0.10', a: '127.0.0.11', b: '127.0.0.12' }
/** The doc's addresses of the machines. */
const DOC_ADDRESSES: Record<string, string> = { '10.0.0.1': 'a', '10.0.0.2': 'b' }

interface Block {
  tag: string
  machine?: string
  text: string
  line: number
}

function blocks(md: string): Block[] {
  const out: Block[] = []
  const re = /^```(\S*)([^\n]*)\n([\s\S]*?)^```$/gm
  for (const m of md.matchAll(re)) {
    const [, lang, info, text] = m as unknown as [string, string, string, string]
    const words = info.trim().split(/\s+/).filter(Boolean)
    const machine = words.find((w) => w.startsWith('machine='))?.slice('machine='.length)
    out.push({
      tag: `${lang} ${words[0] ?? ''}`.trim(),
      machine,
      text,
      line: md.slice(0, m.index).split('\n').length,
    })
  }
  return out
}

/** Lines with `\` continuations joined. */
function commands(text: string): string[] {
  return text
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .filter((l) => l.trim() !== '')
}

const md = readFileSync(DOC, 'utf8')
const all = blocks(md)
const work = mkdtempSync(join(tmpdir(), 'icn-deploy-doc-'))
const home = (m: string): string => join(work, m)
const started: ChildProcess[] = []

afterAll(async () => {
  await Promise.all(
    started.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve()
          p.once('exit', () => resolve())
          p.kill('SIGTERM')
        }),
    ),
  )
  rmSync(work, { recursive: true, force: true })
})

/** One doc command, translated for machine `m` (see the file comment). */
function translate(cmd: string, m: string): string {
  let c = cmd
  for (const [addr, machine] of Object.entries(DOC_ADDRESSES)) c = c.replaceAll(addr, MACHINES[machine]!)
  c = c.replaceAll('127.0.0.1:', `${MACHINES[m]}:`).replaceAll('/ip4/0.0.0.0/', `/ip4/${MACHINES[m]}/`)
  const scp = /^scp\s+(.+)\s+(\S+):$/.exec(c)
  if (scp) {
    const target = Object.entries(MACHINES).find(([, ip]) => ip === scp[2])?.[0]
    if (!target) throw new Error(`scp to an unknown machine: ${cmd}`)
    return `cp ${scp[1]} ${home(target)}/`
  }
  return c
}

function bash(script: string, m: string): { status: number | null; out: string } {
  const r = spawnSync('bash', ['-c', `set -euo pipefail\n${script}`], {
    cwd: home(m),
    encoding: 'utf8',
    env: {
      ...process.env,
      HOME: home(m),
      PATH: `${join(ROOT, 'bin')}:${process.env.PATH}`,
      ICN_API: '',
      ICN_API_KEY: '',
    },
  })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

/** Run a `sh test` block on its machine; `icn node start` lines go to the background. */
async function runBlock(b: Block): Promise<string> {
  const m = b.machine ?? 'solo'
  expect(Object.keys(MACHINES), `line ${b.line}: machine=${m}`).toContain(m)
  for (const x of Object.keys(MACHINES)) mkdirSync(home(x), { recursive: true })
  let out = ''
  let script: string[] = []
  const flush = (): void => {
    if (script.length === 0) return
    const r = bash(script.join('\n'), m)
    out += r.out
    expect(
      r.status,
      `docs/deployment.md block at line ${b.line} (${m}):\n${script.join('\n')}\n${r.out}`,
    ).toBe(0)
    script = []
  }
  for (const cmd of commands(b.text)) {
    const c = translate(cmd, m)
    if (!/^icn node start\b/.test(c)) {
      script.push(c)
      continue
    }
    flush()
    const dataDir = /--data-dir (\S+)/.exec(c)?.[1]?.replace(/^~/, home(m))
    expect(dataDir, `line ${b.line}: node start without --data-dir`).toBeDefined()
    // expand $(…) and quotes the way the doc's shell would, then exec the node (so SIGTERM reaches it)
    const p = spawn('bash', ['-c', `exec ${c} >> node.log 2>&1`], {
      cwd: home(m),
      env: { ...process.env, HOME: home(m), PATH: `${join(ROOT, 'bin')}:${process.env.PATH}` },
      stdio: 'ignore',
    })
    started.push(p)
    await until(
      `the node of ${m} (line ${b.line}) to answer`,
      () => {
        if (p.exitCode !== null) throw new Error(`it exited: ${readLog(m)}`)
        return bash(`icn node info --data-dir ${dataDir}`, m).status === 0
      },
      { timeoutMs: 30_000 },
    )
  }
  flush()
  return out
}

const readLog = (m: string): string =>
  existsSync(join(home(m), 'node.log')) ? readFileSync(join(home(m), 'node.log'), 'utf8') : ''

describe('docs/deployment.md', () => {
  it('marks every shell block: test (run here), readme (the README’s commands) or untested (with the test that covers its files)', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const shell = all.filter((b) => b.tag.startsWith('sh'))
    expect(shell.length).toBeGreaterThan(5)
    for (const b of shell) {
      expect(['sh test', 'sh readme', 'sh untested'], `line ${b.line}: \`\`\`${b.tag}`).toContain(b.tag)
      if (b.tag === 'sh readme')
        for (const c of b.text.split('\n').filter((l) => l.trim()))
          expect(readme.includes(c), `line ${b.line}: not a README command: ${c}`).toBe(true)
      if (b.tag === 'sh untested') {
        // the paragraph after the block says why and what covers it
        const after = md
          .split('\n')
          .slice(b.line + commands(b.text).length, b.line + 40)
          .join('\n')
        expect(after, `line ${b.line}: an untested block must say what is tested instead`).toMatch(
          /[Uu]ntested|tested by|\.ci\/run/,
        )
      }
    }
    expect(all.filter((b) => b.tag === 'sh untested').length).toBeLessThanOrEqual(5)
  })

  it('runs every `sh test` block: one node, then a federation of two machines that replicates', async () => {
    expect(existsSync(join(ROOT, 'dist', 'icn.js')), 'run npm run build first').toBe(true)
    const tested = all.filter((b) => b.tag === 'sh test')
    expect(tested.map((b) => b.machine)).toEqual(['solo', 'solo', 'b', 'a', 'b', 'solo'])
    const outputs: string[] = []
    for (const b of tested) outputs.push(await runBlock(b))
    // the one node answered /ready and its metrics, and wrote a block
    expect(outputs[1]).toMatch(/icn_store_up\{backend="sqlite"\} 1/)
    expect(outputs[1]).toMatch(/\bbafy\w+/)

    // B is connected to A, and a block written on A reaches B
    const api = (m: string): string => `http://${MACHINES[m]}:7420`
    const a = JSON.parse(readFileSync(join(home('a'), 'node-a.json'), 'utf8')) as { peerId: string }
    await until(
      'B to be connected to A',
      async () => {
        const { peers } = (await (await fetch(`${api('b')}/v1/peers`)).json()) as {
          peers: { peerId: string; connected: boolean }[]
        }
        return peers.some((p) => p.peerId === a.peerId && p.connected)
      },
      { timeoutMs: 30_000 },
    )
    const put = bash(`icn dag put --data-dir ~/.icn --value '{"doc":"deployment"}'`, 'a')
    expect(put.status, put.out).toBe(0)
    const cid = /bafy\w+/.exec(put.out)![0]
    await until(
      'the block to reach B',
      async () => (await fetch(`${api('b')}/v1/dag/values/${cid}`)).status === 200,
      {
        timeoutMs: 30_000,
      },
    )
    expect(await (await fetch(`${api('b')}/v1/dag/values/${cid}`)).json()).toMatchObject({
      value: { doc: 'deployment' },
    })
  }, 180_000)
})
