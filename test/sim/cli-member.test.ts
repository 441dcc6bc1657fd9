/**
 * `icn member new` and `icn member show` as a user runs them: real processes, real files, exit statuses and the
 * error codes on stderr; bad input changes nothing.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Signer } from '../../src/identity/index.js'
import { type CliResult, initDataDir, killAll, removeTempDirs, runCli, tempDir } from '../helpers/process.js'

interface MemberJson {
  did: string
  dir: string
  keystore: string
  home?: string
}

let work: string

function ok(r: CliResult): CliResult {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
  return r
}

/** Exit `code` with `icn: ERROR_CODE: ` on stderr and nothing on stdout. */
function fails(r: CliResult, code: number, errorCode: string): void {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(code)
  expect(r.stderr).toContain(`icn: ${errorCode}: `)
  expect(r.stdout).toBe('')
}

beforeAll(async () => {
  work = await tempDir('icn-member-')
})

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

describe('icn member', () => {
  it('new --json creates a member identity; show (no passphrase) prints the same', async () => {
    const dir = join(work, 'alice')
    const home = Signer.generate().did
    const created = JSON.parse(
      ok(await runCli(['member', 'new', '--dir', dir, '--home', home, '--json'])).stdout,
    ) as MemberJson
    expect(created).toEqual({ did: created.did, dir, keystore: join(dir, 'keystore.json'), home })
    expect(created.did).toMatch(/^did:key:z6Mk/)
    expect((await stat(created.keystore)).mode & 0o777).toBe(0o600)
    const keystore = JSON.parse(await readFile(created.keystore, 'utf8')) as { did: string }
    expect(keystore.did).toBe(created.did)

    const [json, plain] = await Promise.all([
      runCli(['member', 'show', '--dir', dir, '--json'], { env: { ICN_PASSPHRASE: undefined } }),
      runCli(['member', 'show', '--dir', dir], { env: { ICN_PASSPHRASE: undefined } }),
    ])
    expect(JSON.parse(ok(json).stdout)).toEqual(created)
    expect(ok(plain).stdout).toMatch(new RegExp(`^DID\\s+${created.did}$`, 'm'))
    expect(plain.stdout).toMatch(new RegExp(`^home\\s+${home}$`, 'm'))
  })

  it('new reads the passphrase from --passphrase-file; two members get different DIDs', async () => {
    const file = join(work, 'pass')
    await writeFile(file, 'a long enough passphrase\n')
    const [a, b] = await Promise.all(
      ['m1', 'm2'].map((name) =>
        runCli(['member', 'new', '--dir', join(work, name), '--passphrase-file', file, '--json'], {
          env: { ICN_PASSPHRASE: undefined },
        }),
      ),
    )
    const [da, db] = [a!, b!].map((r) => (JSON.parse(ok(r).stdout) as MemberJson).did)
    expect(da).not.toBe(db)
    expect(ok(await runCli(['member', 'new', '--dir', join(work, 'm3')])).stdout).toContain(
      'Created member identity',
    )
  })

  it('bad input exits 2 and changes nothing; a folder without a member is exit 1', async () => {
    const taken = join(work, 'taken')
    const first = JSON.parse(
      ok(await runCli(['member', 'new', '--dir', taken, '--json'])).stdout,
    ) as MemberJson
    const before = await readFile(first.keystore, 'utf8')
    const nodeDir = join(work, 'node')
    await initDataDir(nodeDir)
    const nodeFiles = (await readdir(nodeDir)).sort()
    const short = join(work, 'short')
    const badHome = join(work, 'badhome')
    const [again, node, shortPass, noPass, home, noDir, missing] = await Promise.all([
      runCli(['member', 'new', '--dir', taken]),
      runCli(['member', 'new', '--dir', nodeDir]),
      runCli(['member', 'new', '--dir', short], { env: { ICN_PASSPHRASE: 'seven77' } }),
      runCli(['member', 'new', '--dir', short], { env: { ICN_PASSPHRASE: undefined } }),
      runCli(['member', 'new', '--dir', badHome, '--home', 'node1']),
      runCli(['member', 'new']),
      runCli(['member', 'show', '--dir', join(work, 'nobody')]),
    ])
    fails(again!, 2, 'MEMBER_EXISTS')
    expect(again!.stderr).toContain('already holds a member')
    fails(node!, 2, 'MEMBER_EXISTS')
    expect(node!.stderr).toContain('keystore.json')
    fails(shortPass!, 2, 'PASSPHRASE_TOO_SHORT')
    fails(noPass!, 2, 'PASSPHRASE_REQUIRED')
    fails(home!, 2, 'INVALID_DID')
    expect(noDir!.code).toBe(2)
    expect(noDir!.stderr).toContain("required option '--dir <dir>'")
    fails(missing!, 1, 'MEMBER_NOT_FOUND')
    expect(await readFile(first.keystore, 'utf8')).toBe(before)
    expect((await readdir(nodeDir)).sort()).toEqual(nodeFiles)
    const left = await readdir(work)
    for (const name of ['short', 'badhome', 'nobody']) expect(left).not.toContain(name)
  })
})
