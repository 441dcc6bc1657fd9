/**
 * `icn init` and `icn id …` as a user runs them: real processes, real files, exit statuses and the error codes
 * printed on stderr.
 */
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { didFromPublicKey } from '../../src/identity/index.js'
import { type CliResult, initDataDir, killAll, removeTempDirs, runCli, tempDir } from '../helpers/process.js'

/** RFC 8032 section 7.1 vectors (the four the CLI check covers). */
const VECTORS = [
  {
    name: 'TEST 1',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature:
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b' +
      'd25bf5f0595bbe24655141438e7a100b',
  },
  {
    name: 'TEST 2',
    publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature:
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c' +
      '387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    name: 'TEST 3',
    publicKey: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature:
      '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc659' +
      '4a7c15e9716ed28dc027beceea1ec40a',
  },
  {
    name: 'TEST SHA(abc)',
    publicKey: 'ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf',
    message:
      'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd' +
      '454d4423643ce80e2a9ac94fa54ca49f',
    signature:
      'dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e030' +
      '3dca179c138ac17ad9bef1177331a704',
  },
]

/** `hex` with the lowest bit of byte `index` flipped. */
function flipBit(hex: string, index: number): string {
  const bytes = Buffer.from(hex, 'hex')
  bytes[index] = bytes[index]! ^ 0x01
  return bytes.toString('hex')
}

/** The stderr line of a failed command starts with `icn: CODE:`. */
function expectError(r: CliResult, exitCode: number, code?: string): void {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(exitCode)
  expect(r.stderr).toMatch(/^icn: \S/)
  if (code) expect(r.stderr).toContain(`icn: ${code}: `)
}

afterEach(killAll)
afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

describe('icn init', () => {
  it('creates an identity, an API key and the config, readable by the owner only', async () => {
    const dir = join(await tempDir(), 'data')
    const r = await runCli(['init', '--data-dir', dir, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as { did: string; apiKey: string; dataDir: string }
    expect(out.did).toMatch(/^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]+$/)
    expect(out.apiKey).toMatch(/^[A-Za-z0-9_-]{32,}$/)
    expect(out.dataDir).toBe(dir)
    for (const f of ['keystore.json', 'api-key', 'config.json'])
      expect((await stat(join(dir, f))).mode & 0o777, f).toBe(0o600)
    expect((await readFile(join(dir, 'api-key'), 'utf8')).trim()).toBe(out.apiKey)
    const keystore = await readFile(join(dir, 'keystore.json'), 'utf8')
    expect(keystore).toContain(out.did)
    expect(keystore).not.toContain(out.apiKey)
  })

  it('refuses to overwrite an existing identity and leaves it byte-identical', async () => {
    const dir = await tempDir()
    const first = await initDataDir(dir)
    const keystore = await readFile(join(dir, 'keystore.json'))
    const apiKey = await readFile(join(dir, 'api-key'))
    const again = await runCli(['init', '--data-dir', dir, '--json'])
    expectError(again, 1, 'KEYSTORE_EXISTS')
    expect(again.stdout).toBe('')
    expect(await readFile(join(dir, 'keystore.json'))).toEqual(keystore)
    expect(await readFile(join(dir, 'api-key'))).toEqual(apiKey)
    expect(keystore.toString()).toContain(first.did)
  })

  it('without a passphrase (no ICN_PASSPHRASE, stdin not a terminal) fails clearly and creates nothing', async () => {
    const dir = join(await tempDir(), 'data')
    const r = await runCli(['init', '--data-dir', dir, '--json'], { env: { ICN_PASSPHRASE: undefined } })
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('PASSPHRASE_REQUIRED')
    expect(r.stderr).toContain('ICN_PASSPHRASE')
    expect(r.stdout).toBe('')
    await expect(stat(join(dir, 'keystore.json'))).rejects.toThrow()
  })
})

describe('icn id', () => {
  let dir: string
  let did: string

  beforeAll(async () => {
    dir = await tempDir()
    did = (await initDataDir(dir)).did
  })

  it('show prints the DID, with no passphrase needed', async () => {
    const r = await runCli(['id', 'show', '--data-dir', dir, '--json'], {
      env: { ICN_PASSPHRASE: undefined },
    })
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ did, dataDir: dir })
  })

  it('sign then verify under a namespace; a changed message or a missing namespace is invalid', async () => {
    const message = Buffer.from('the minutes of the 2024 general assembly').toString('hex')
    const sign = await runCli([
      'id',
      'sign',
      '--data-dir',
      dir,
      '--namespace',
      'file',
      '--message-hex',
      message,
    ])
    expect(sign.code, sign.stderr).toBe(0)
    const sig = sign.stdout.trim()
    expect(sig).toMatch(/^[0-9a-f]{128}$/)

    const verify = (extra: string[]): Promise<CliResult> =>
      runCli(['id', 'verify', '--did', did, '--signature-hex', sig, ...extra])
    // Without --namespace the CLI checks a plain Ed25519 signature over the bytes: a namespaced signature must
    // not pass as one (domain separation).
    const [ok, wrongMessage, noNamespace] = await Promise.all([
      verify(['--namespace', 'file', '--message-hex', message]),
      verify(['--namespace', 'file', '--message-hex', `${message}00`]),
      verify(['--message-hex', message]),
    ])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout.trim()).toBe('valid')
    for (const bad of [wrongMessage, noNamespace]) {
      expect(bad.code, bad.stderr).toBe(1)
      expect(bad.stdout).toMatch(/INVALID/)
    }
  })

  it('--file signs the same bytes --message-hex gives', async () => {
    const file = join(await tempDir(), 'doc.bin')
    const bytes = Buffer.from([0, 1, 2, 255, 10, 13, 0x80])
    await writeFile(file, bytes)
    const sign = await runCli([
      'id',
      'sign',
      '--data-dir',
      dir,
      '--namespace',
      'file',
      '--file',
      file,
      '--json',
    ])
    expect(sign.code, sign.stderr).toBe(0)
    const signed = JSON.parse(sign.stdout) as { did: string; namespace: string; signatureHex: string }
    expect(signed).toMatchObject({ did, namespace: 'file' })
    const verify = await runCli([
      'id',
      'verify',
      '--did',
      did,
      '--signature-hex',
      signed.signatureHex,
      '--namespace',
      'file',
      '--message-hex',
      bytes.toString('hex'),
      '--json',
    ])
    expect(verify.code, verify.stderr).toBe(0)
    expect(JSON.parse(verify.stdout)).toMatchObject({ valid: true, did, namespace: 'file' })
  })

  it('malformed input exits 2 with a message', async () => {
    const sig = '00'.repeat(64)
    const cases: Array<[string, string[], string]> = [
      ['odd hex', ['--did', did, '--signature-hex', sig, '--message-hex', 'abc'], 'hexadecimal'],
      ['bad DID', ['--did', 'did:key:nonsense', '--signature-hex', sig, '--message-hex', '00'], '--did'],
      [
        '63-byte signature',
        ['--did', did, '--signature-hex', '00'.repeat(63), '--message-hex', '00'],
        '64 bytes',
      ],
      [
        'both --message-hex and --file',
        ['--did', did, '--signature-hex', sig, '--message-hex', '00', '--file', join(dir, 'config.json')],
        'exactly one',
      ],
      ['neither --message-hex nor --file', ['--did', did, '--signature-hex', sig], 'exactly one'],
    ]
    const results = await Promise.all(cases.map(([, args]) => runCli(['id', 'verify', ...args])))
    results.forEach((r, i) => {
      const [name, , says] = cases[i]!
      expect(r.code, `${name}: ${r.stderr}`).toBe(2)
      expect(r.stderr, name).toMatch(/^icn: /)
      expect(r.stderr, name).toContain(says)
      expect(r.stdout, name).toBe('')
    })
  })

  it('a wrong passphrase fails with WRONG_PASSPHRASE and changes nothing', async () => {
    const keystore = await readFile(join(dir, 'keystore.json'))
    const [sign, start] = await Promise.all([
      runCli(['id', 'sign', '--data-dir', dir, '--namespace', 'file', '--message-hex', '00'], {
        env: { ICN_PASSPHRASE: 'wrong' },
      }),
      runCli(['node', 'start', '--data-dir', dir, '--api-listen', '127.0.0.1:0', '--json'], {
        env: { ICN_PASSPHRASE: 'wrong' },
      }),
    ])
    expectError(sign, 1, 'WRONG_PASSPHRASE')
    expect(sign.stdout).toBe('')
    expectError(start, 1, 'WRONG_PASSPHRASE')
    expect(start.stdout).toBe('')
    expect(await readFile(join(dir, 'keystore.json'))).toEqual(keystore)
    // The node never got as far as opening a store.
    await expect(stat(join(dir, 'store.sqlite'))).rejects.toThrow()
  })
})

describe('icn id verify against RFC 8032 section 7.1', () => {
  it.each(VECTORS)('$name: valid, and invalid with one signature bit flipped', async (v) => {
    const did = didFromPublicKey(new Uint8Array(Buffer.from(v.publicKey, 'hex')))
    const args = (sig: string): string[] => [
      'id',
      'verify',
      '--did',
      did,
      '--signature-hex',
      sig,
      '--message-hex',
      v.message,
    ]
    const [good, bad] = await Promise.all([runCli(args(v.signature)), runCli(args(flipBit(v.signature, 0)))])
    expect(good.code, good.stderr).toBe(0)
    expect(good.stdout.trim()).toBe('valid')
    expect(bad.code, bad.stderr).toBe(1)
  })
})
