/**
 * Member folders (src/node/member-dir.ts) and `openMember` (src/cli/member.ts), the one way the CLI unlocks a
 * member: what a folder records, where the passphrase comes from, and the bad folders.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openMember } from '../../../src/cli/member.js'
import { createKeystore, Signer } from '../../../src/identity/index.js'
import {
  checkNewMemberDir,
  createMemberDir,
  MEMBER_FILE,
  readMemberDir,
} from '../../../src/node/member-dir.js'

const PASS = 'member-test-passphrase'
const KDF = { N: 1024 }
const home = Signer.generate().did

let root: string
let n = 0
const fresh = (): string => join(root, `m${++n}`)

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'icn-member-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

/** The error `fn` rejects with, failing the test if it resolves. */
async function errorOf(fn: () => Promise<unknown>): Promise<Error & { code: string }> {
  try {
    await fn()
  } catch (err) {
    return err as Error & { code: string }
  }
  throw new Error('expected an error')
}

describe('member folders', () => {
  it('create writes a 0600 keystore and member.json; read gives the same member without a passphrase', async () => {
    const dir = fresh()
    const made = await createMemberDir(dir, PASS, { home, kdf: KDF })
    expect(made).toEqual({ did: made.did, dir, keystore: join(dir, 'keystore.json'), home })
    expect(made.did).toMatch(/^did:key:z6Mk/)
    expect(made.did).not.toBe(home)
    expect((await stat(made.keystore)).mode & 0o777).toBe(0o600)
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    expect(JSON.parse(await readFile(join(dir, MEMBER_FILE), 'utf8'))).toEqual({
      version: 1,
      did: made.did,
      home,
    })
    expect(await readMemberDir(dir)).toEqual(made)
  })

  it('records the passphrase file and home data folder relative to the folder', async () => {
    const base = join(root, 'devnet-like')
    await mkdir(join(base, 'node1'), { recursive: true })
    await writeFile(join(base, 'passphrase'), `${PASS}\n`)
    const dir = join(base, 'members', 'member1')
    await createMemberDir(dir, PASS, {
      home,
      homeDataDir: join(base, 'node1'),
      passphraseFile: join(base, 'passphrase'),
      kdf: KDF,
    })
    const file = JSON.parse(await readFile(join(dir, MEMBER_FILE), 'utf8'))
    expect(file).toMatchObject({ homeDataDir: '../../node1', passphraseFile: '../../passphrase' })
    expect(await readMemberDir(dir)).toMatchObject({
      homeDataDir: join(base, 'node1'),
      passphraseFile: join(base, 'passphrase'),
    })
  })

  it('refuses a folder that holds a member or another keystore, and a short passphrase, changing nothing', async () => {
    const dir = fresh()
    await createMemberDir(dir, PASS, { kdf: KDF })
    const before = await readFile(join(dir, 'keystore.json'), 'utf8')
    expect((await errorOf(() => createMemberDir(dir, PASS, { kdf: KDF }))).code).toBe('MEMBER_EXISTS')
    expect((await errorOf(() => checkNewMemberDir(dir))).code).toBe('MEMBER_EXISTS')
    expect(await readFile(join(dir, 'keystore.json'), 'utf8')).toBe(before)

    // A node's data folder: a keystore but no member.json.
    const nodeDir = fresh()
    await mkdir(nodeDir)
    await createKeystore(join(nodeDir, 'keystore.json'), Signer.generate(), PASS, { kdf: KDF })
    const err = await errorOf(() => createMemberDir(nodeDir, PASS, { kdf: KDF }))
    expect(err.code).toBe('MEMBER_EXISTS')
    expect(await readdir(nodeDir)).toEqual(['keystore.json'])

    const short = fresh()
    expect((await errorOf(() => createMemberDir(short, 'short', { kdf: KDF }))).code).toBe(
      'PASSPHRASE_TOO_SHORT',
    )
    expect((await errorOf(() => createMemberDir(short, PASS, { home: 'nope', kdf: KDF }))).code).toBe(
      'INVALID_DID',
    )
    expect((await errorOf(() => stat(short))).code).toBe('ENOENT')
    const file = join(root, 'a-file')
    await writeFile(file, 'not a folder')
    expect((await errorOf(() => createMemberDir(file, PASS, { kdf: KDF }))).code).toBe('INVALID_OPTION')
    expect(await readFile(file, 'utf8')).toBe('not a folder')
  })

  it('two creates in one folder at once: one member, the other MEMBER_EXISTS', async () => {
    const dir = fresh()
    const results = await Promise.allSettled([
      createMemberDir(dir, PASS, { kdf: KDF }),
      createMemberDir(dir, PASS, { kdf: KDF }),
    ])
    const ok = results.filter((r) => r.status === 'fulfilled')
    const failed = results.filter((r) => r.status === 'rejected')
    expect(ok).toHaveLength(1)
    expect(failed).toHaveLength(1)
    expect(((failed[0] as PromiseRejectedResult).reason as { code: string }).code).toBe('MEMBER_EXISTS')
    expect((await readMemberDir(dir)).did).toBe((ok[0] as PromiseFulfilledResult<{ did: string }>).value.did)
  })

  it('read: no member, a bad member.json, or one naming another DID than the keystore', async () => {
    expect((await errorOf(() => readMemberDir(fresh()))).code).toBe('MEMBER_NOT_FOUND')
    const dir = fresh()
    const made = await createMemberDir(dir, PASS, { kdf: KDF })
    const file = join(dir, MEMBER_FILE)
    const cases: [string, RegExp][] = [
      ['not json', /not JSON/],
      ['[]', /version 1/],
      [JSON.stringify({ version: 2, did: made.did }), /version 1/],
      [JSON.stringify({ version: 1, did: 'did:web:x' }), /did is not/],
      [JSON.stringify({ version: 1, did: made.did, home: 'x' }), /home is not/],
      [JSON.stringify({ version: 1, did: made.did, passphraseFile: 7 }), /passphraseFile is not a path/],
      [JSON.stringify({ version: 1, did: Signer.generate().did }), /but the keystore holds/],
    ]
    for (const [text, message] of cases) {
      await writeFile(file, text)
      const err = await errorOf(() => readMemberDir(dir))
      expect(err.code, text).toBe('INVALID_MEMBER_DIR')
      expect(err.message, text).toMatch(message)
    }
  })
})

describe('openMember', () => {
  it('opens with the passphrase file the folder records, with no environment and no terminal', async () => {
    const dir = fresh()
    const passFile = join(root, `pass${n}`)
    await writeFile(passFile, `${PASS}\n`)
    const made = await createMemberDir(dir, PASS, { home, passphraseFile: passFile, kdf: KDF })
    const m = await openMember(dir, { env: {}, interactive: false })
    expect(m.did).toBe(made.did)
    expect(m.signer.did).toBe(made.did)
    expect(m.dir).toBe(dir)
    expect(m.home).toBe(home)
    // The folder's own file wins over ICN_PASSPHRASE; --passphrase-file wins over both.
    expect((await openMember(dir, { env: { ICN_PASSPHRASE: 'not the passphrase' } })).did).toBe(made.did)
    const wrongFile = join(root, `wrong${n}`)
    await writeFile(wrongFile, 'not the passphrase')
    expect((await errorOf(() => openMember(dir, { passphraseFile: wrongFile, env: {} }))).code).toBe(
      'WRONG_PASSPHRASE',
    )
  })

  it('without a recorded file: --passphrase-file, else ICN_PASSPHRASE, else PASSPHRASE_REQUIRED', async () => {
    const dir = fresh()
    const made = await createMemberDir(dir, PASS, { kdf: KDF })
    const passFile = join(root, `pass${n}`)
    await writeFile(passFile, PASS)
    expect((await openMember(dir, { passphraseFile: passFile, env: {} })).did).toBe(made.did)
    expect((await openMember(dir, { env: { ICN_PASSPHRASE: PASS } })).did).toBe(made.did)
    expect((await errorOf(() => openMember(dir, { env: { ICN_PASSPHRASE: 'wrong-passphrase' } }))).code).toBe(
      'WRONG_PASSPHRASE',
    )
    // No source and no prompt allowed: a typed error.
    expect((await errorOf(() => openMember(dir, { env: {}, interactive: false }))).code).toBe(
      'PASSPHRASE_REQUIRED',
    )
    expect((await errorOf(() => openMember(fresh(), { env: {} }))).code).toBe('MEMBER_NOT_FOUND')
  })
})
