/**
 * deploy/systemd/icn.service: `systemd-analyze verify` accepts it with no warning, its sandbox is hardened
 * (`systemd-analyze security` rates its exposure), and the data folder it writes is the one it may write.
 * verify checks that ExecStart's binary exists, so the test verifies a copy whose ExecStart points at this
 * checkout's bin/icn instead of /opt/icn/bin/icn; everything else is the shipped file byte for byte.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const ROOT = join(import.meta.dirname, '..', '..')
const UNIT = join(ROOT, 'deploy', 'systemd', 'icn.service')
const SHIPPED_BIN = '/opt/icn/bin/icn'

const haveSystemd = spawnSync('systemd-analyze', ['--version']).status === 0
const dir = mkdtempSync(join(tmpdir(), 'icn-systemd-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A copy of the unit with ExecStart's binary at a path that exists here (and optionally another change). */
function unitCopy(name: string, edit: (text: string) => string = (t) => t): string {
  const text = readFileSync(UNIT, 'utf8')
  expect(text).toContain(`ExecStart=${SHIPPED_BIN} `)
  const file = join(dir, name)
  writeFileSync(file, edit(text.replaceAll(SHIPPED_BIN, join(ROOT, 'bin', 'icn'))))
  return file
}

function analyze(...args: string[]): { status: number | null; output: string } {
  const r = spawnSync('systemd-analyze', args, { encoding: 'utf8' })
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() }
}

/** The unit's [Service] settings, key → values (a key may repeat). */
function settings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!])
  }
  return out
}

describe('deploy/systemd/icn.service', () => {
  const check = (ctx: { skip: () => void }): void => {
    if (haveSystemd) return
    if (process.env.CI === 'true') throw new Error('systemd-analyze not found: apt-get install -y systemd')
    ctx.skip()
  }

  it('passes systemd-analyze verify with no warning', (ctx) => {
    check(ctx)
    expect(analyze('verify', unitCopy('icn.service'))).toEqual({ status: 0, output: '' })
  })

  it('the verification can fail: a misspelt hardening key or a missing binary is reported', (ctx) => {
    check(ctx)
    const typo = analyze(
      'verify',
      unitCopy('icn.service', (t) => t.replace('NoNewPrivileges=', 'NoNewPrivilege=')),
    )
    expect(typo.output).toMatch(/Unknown key 'NoNewPrivilege'/)
    const missing = analyze('verify', UNIT) // the shipped path, /opt/icn/bin/icn, does not exist here
    expect(missing.status).not.toBe(0)
    expect(missing.output).toMatch(/not executable|No such file/)
  })

  it('is hardened: systemd-analyze security rates its exposure 2.0 or lower', (ctx) => {
    check(ctx)
    const r = analyze('security', '--offline=true', unitCopy('icn.service'))
    const m = /Overall exposure level for icn\.service: (\d+\.\d+)/.exec(r.output)
    expect(m, r.output).not.toBeNull()
    expect(Number(m![1])).toBeLessThanOrEqual(2.0)
  })

  it('runs as a dedicated user, writes only its data and cache folders, and takes the passphrase as a credential', () => {
    const s = settings(readFileSync(UNIT, 'utf8'))
    expect(s.get('User')).toEqual(['icn'])
    expect(s.get('NoNewPrivileges')).toEqual(['true'])
    expect(s.get('ProtectSystem')).toEqual(['strict'])
    expect(s.get('ProtectHome')).toEqual(['true'])
    expect(s.get('PrivateTmp')).toEqual(['true'])
    expect(s.get('CapabilityBoundingSet')).toEqual([''])
    expect(s.get('StateDirectory')).toEqual(['icn'])
    expect(s.get('ReadWritePaths')).toEqual(['/var/lib/icn'])
    // and the code cache in the cache folder, where /tmp (PrivateTmp) would lose it at every restart
    expect(s.get('CacheDirectory')).toEqual(['icn'])
    expect(s.get('Environment')).toContain('ICN_CODE_CACHE_DIR=%C/icn')
    // V8's JIT needs W^X off; the unit must not set it
    expect(s.has('MemoryDenyWriteExecute')).toBe(false)
    const exec = s.get('ExecStart')?.[0] ?? ''
    expect(exec).toContain('node start --data-dir /var/lib/icn ')
    expect(exec).toContain('--passphrase-file %d/passphrase')
    expect(s.get('LoadCredential')).toEqual(['passphrase:/etc/icn/passphrase'])
    // and the sysusers file creates that user
    expect(readFileSync(join(ROOT, 'deploy', 'systemd', 'icn.sysusers'), 'utf8')).toMatch(/^u icn - /m)
  })
})
