/**
 * `icn federation …` as a user runs it: create a genesis with the data folder's identity, show it, list the
 * parameters, and the errors (exit 2, nothing written) for each kind of bad input.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Signer } from '../../src/identity/index.js'
import { type CliResult, initDataDir, killAll, removeTempDirs, runCli, tempDir } from '../helpers/process.js'

interface Summary {
  id: string
  name: string
  founder: string
  members: string[]
  nodes: string[]
  homes: Record<string, string>
  parameters: Record<string, number>
  file: string
}

let work: string
let dataDir: string
let founder: string
const alice = Signer.generate().did
const bob = Signer.generate().did

function ok(r: CliResult): CliResult {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
  return r
}

/** Exit 2 with `message` on stderr and nothing on stdout. */
function usage(r: CliResult, message: string | RegExp): void {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(2)
  expect(r.stderr).toMatch(message)
  expect(r.stdout).toBe('')
}

const create = (out: string, ...extra: string[]): Promise<CliResult> =>
  runCli(['federation', 'create', '--data-dir', dataDir, '--out', out, ...extra])

beforeAll(async () => {
  work = await tempDir()
  dataDir = join(work, 'node')
  founder = (await initDataDir(dataDir)).did
})

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

describe('icn federation', () => {
  it('create with defaults: the founder is the only member and node; show prints the same', async () => {
    const out = join(work, 'solo.car')
    const r = ok(await create(out, '--name', 'Solo Coop'))
    expect(r.stdout).toMatch(/^federation bafy[a-z2-7]+$/m)
    expect(r.stdout).toContain('Solo Coop')
    expect(r.stdout).toContain(`wrote ${out}`)
    const [json, plain] = await Promise.all([
      runCli(['federation', 'show', out, '--json']),
      runCli(['federation', 'show', out]),
    ])
    const shown = JSON.parse(ok(json).stdout) as Summary
    expect(shown).toMatchObject({
      name: 'Solo Coop',
      founder,
      members: [founder],
      nodes: [founder],
      homes: { [founder]: founder },
      parameters: { syncIntervalMs: 10_000, maxMessageBytes: 1_048_576 },
      file: out,
    })
    expect(r.stdout).toContain(`federation ${shown.id}`)
    const text = ok(plain).stdout
    expect(text).toContain(`federation ${shown.id}`)
    expect(text).toMatch(/maxBlocksPerResponse\s+1024/)
    expect(text).toContain(`    ${founder}  home ${founder}`)
  })

  it('create with --member DID@NODE homes members; one without @NODE is at the first node', async () => {
    const out = join(work, 'homes.car')
    const carol = Signer.generate().did
    const nodes = [founder, bob].sort()
    const r = ok(
      await create(
        out,
        '--name',
        'Homes',
        '--node',
        bob,
        '--member',
        `${alice}@${bob}`,
        '--member',
        carol,
        '--json',
      ),
    )
    const created = JSON.parse(r.stdout) as Summary
    expect(created.members).toEqual([alice, carol].sort())
    expect(created.homes).toEqual({ [alice]: bob, [carol]: nodes[0] })
    const text = ok(await runCli(['federation', 'show', out])).stdout
    expect(text).toContain(`    ${alice}  home ${bob}`)
    expect(text).toContain(`    ${carol}  home ${nodes[0]}`)
    // The founder's own DID as a home, without --node.
    const own = JSON.parse(
      ok(await create(join(work, 'own.car'), '--name', 'Own', '--member', `${alice}@${founder}`, '--json'))
        .stdout,
    ) as Summary
    expect(own.homes).toEqual({ [alice]: founder })
  })

  it('bad --member DID@NODE exits 2 and writes nothing', async () => {
    const out = join(work, 'badhome.car')
    const [notNode, emptyHome, emptyMember, twoAts, badHome, badMemberDid] = await Promise.all([
      create(out, '--name', 'X', '--member', `${alice}@${bob}`),
      create(out, '--name', 'X', '--member', `${alice}@`),
      create(out, '--name', 'X', '--member', `@${founder}`),
      create(out, '--name', 'X', '--member', `${alice}@${founder}@${founder}`),
      create(out, '--name', 'X', '--member', `${alice}@node2`),
      create(out, '--name', 'X', '--member', `did:key:zBad@${founder}`),
    ])
    usage(notNode, /INVALID_GENESIS: the home "did:key:\S+" of member did:key:\S+ is not one of the nodes/)
    expect(notNode.stderr).toContain(bob)
    for (const r of [emptyHome, emptyMember, twoAts]) usage(r, /--member must be DID or DID@NODE_DID/)
    usage(badHome, /INVALID_GENESIS: the home "node2" of member/)
    usage(badMemberDid, /INVALID_DID: members\[0\] is not an Ed25519 did:key/)
    expect((await readdir(work)).filter((n) => n.startsWith('badhome.car'))).toEqual([])
  })

  it('create with repeated --member, --node and --param (--json); show agrees', async () => {
    const out = join(work, 'coop.car')
    const r = ok(
      await create(
        out,
        '--name',
        'Coop Net',
        '--member',
        alice,
        '--member',
        bob,
        '--node',
        bob,
        '--param',
        'syncIntervalMs=2000',
        '--param',
        'maxBlocksPerResponse=64',
        '--json',
      ),
    )
    const created = JSON.parse(r.stdout) as Summary
    expect(created).toMatchObject({
      name: 'Coop Net',
      founder,
      members: [alice, bob].sort(),
      nodes: [founder, bob].sort(),
      parameters: { syncIntervalMs: 2000, maxBlocksPerResponse: 64, maxResponseBytes: 4_194_304 },
      file: out,
    })
    expect(Object.keys(created).sort()).toEqual([
      'file',
      'founder',
      'homes',
      'id',
      'members',
      'name',
      'nodes',
      'parameters',
    ])
    expect(JSON.parse(ok(await runCli(['federation', 'show', out, '--json'])).stdout)).toEqual(created)
  })

  it('params lists every parameter with default and bounds', async () => {
    const [json, plain] = await Promise.all([
      runCli(['federation', 'params', '--json']),
      runCli(['federation', 'params']),
    ])
    const rows = JSON.parse(ok(json).stdout) as {
      name: string
      default: number
      minimum: number
      maximum: number
    }[]
    expect(rows.map((p) => p.name)).toEqual([
      'syncIntervalMs',
      'maxMessageBytes',
      'maxBlocksPerResponse',
      'maxResponseBytes',
      'manaCap',
      'manaRegenSeconds',
      'memberAllocation',
      'treasuryAllocation',
      'settlementFeeBps',
      'ledgerSkewMs',
      'recordMaxTtlMs',
    ])
    expect(rows[0]).toMatchObject({ default: 10_000, minimum: 1_000, maximum: 3_600_000 })
    const text = ok(plain).stdout
    expect(text).toMatch(/^maxResponseBytes\s+4194304\s+262144\s+16777216\s+\S/m)
    expect(text).toMatch(/^settlementFeeBps\s+100\s+0\s+10000\s+fee on settlements/m)
  })

  it('bad input exits 2 with a clear message and writes nothing', async () => {
    const out = join(work, 'bad.car')
    const [unknownParam, outOfBounds, badMember, badNode, badName, noName, noOut] = await Promise.all([
      create(out, '--name', 'X', '--param', 'fanout=6'),
      create(out, '--name', 'X', '--param', 'maxBlocksPerResponse=8'),
      create(out, '--name', 'X', '--member', 'did:key:zNotAKey'),
      create(out, '--name', 'X', '--node', 'alice'),
      create(out, '--name', 'no/slashes'),
      create(out),
      runCli(['federation', 'create', '--data-dir', dataDir, '--name', 'X']),
    ])
    usage(unknownParam, /INVALID_PARAMETER: unknown federation parameter "fanout"/)
    usage(
      outOfBounds,
      /INVALID_PARAMETER: parameter maxBlocksPerResponse must be an integer from 16 to 4096, got 8/,
    )
    usage(badMember, /INVALID_DID: members\[0\] is not an Ed25519 did:key/)
    usage(badNode, /INVALID_DID: nodes\[1\] is not an Ed25519 did:key: "alice"/)
    usage(badName, /INVALID_GENESIS: federation name must be/)
    expect(noName.code).toBe(2)
    expect(noName.stderr).toContain("required option '--name <name>'")
    expect(noOut.code).toBe(2)
    expect(noOut.stderr).toContain("required option '--out <file>'")
    expect((await readdir(work)).filter((n) => n.startsWith('bad.car'))).toEqual([])
  })

  it('an existing --out is kept unless --force; a wrong passphrase writes nothing', async () => {
    const out = join(work, 'taken.car')
    await writeFile(out, 'keep me')
    const [taken, wrong] = await Promise.all([
      create(out, '--name', 'X'),
      runCli(['federation', 'create', '--data-dir', dataDir, '--out', join(work, 'w.car'), '--name', 'X'], {
        env: { ICN_PASSPHRASE: 'not the passphrase' },
      }),
    ])
    usage(taken, /GENESIS_EXISTS: .*taken\.car already exists \(use --force/)
    expect(await readFile(out, 'utf8')).toBe('keep me')
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toContain('WRONG_PASSPHRASE')
    expect((await readdir(work)).filter((n) => n.startsWith('w.car'))).toEqual([])
    const forced = JSON.parse(
      ok(await create(out, '--name', 'Forced', '--force', '--json')).stdout,
    ) as Summary
    expect(JSON.parse(ok(await runCli(['federation', 'show', out, '--json'])).stdout)).toEqual(forced)
  })

  it('show: a missing file, a non-CAR file and a tampered genesis exit 2', async () => {
    const missing = join(work, 'missing.car')
    const garbage = join(work, 'garbage.car')
    await writeFile(garbage, 'not a car file')
    // Flip one byte of the signature (the block is the last section): the CID no longer matches.
    const bytes = await readFile(join(work, 'solo.car'))
    bytes[bytes.length - 1]! ^= 1
    const tampered = join(work, 'tampered.car')
    await writeFile(tampered, bytes)
    const [r1, r2, r3] = await Promise.all(
      [missing, garbage, tampered].map((f) => runCli(['federation', 'show', f])),
    )
    usage(r1!, `GENESIS_NOT_FOUND: no genesis file at ${missing}`)
    usage(r2!, /INVALID_GENESIS: .*garbage\.car is not a CAR file/)
    usage(r3!, /INVALID_GENESIS: .*CID_MISMATCH/)
  })

  it('psk writes a private-network key (mode 0600) and never overwrites one', async () => {
    const out = join(work, 'swarm.key')
    ok(await runCli(['federation', 'psk', '--out', out]))
    const text = await readFile(out, 'utf8')
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
    expect((await stat(out)).mode & 0o777).toBe(0o600)
    usage(await runCli(['federation', 'psk', '--out', out]), /exists/)
    expect(await readFile(out, 'utf8')).toBe(text)
  })
})
