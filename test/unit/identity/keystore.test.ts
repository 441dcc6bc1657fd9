import { createCipheriv, randomBytes, scryptSync } from 'node:crypto'
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  checkKeystorePermissions,
  createKeystore,
  KeystoreCorruptError,
  MIN_PASSPHRASE_LENGTH,
  openKeystore,
  PassphraseTooShortError,
  readKeystoreDid,
  Signer,
} from '../../../src/identity/index.js'

const FAST = { kdf: { N: 1024 } }
const PASS = 'correct horse battery staple'

let dir: string
let path: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-keystore-'))
  path = join(dir, 'identity.json')
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (err) {
    return err
  }
  throw new Error('expected the promise to reject')
}

interface Json {
  [field: string]: unknown
  kdf?: Record<string, unknown>
  cipher?: Record<string, unknown>
}

async function readJson(): Promise<Json> {
  return JSON.parse(await readFile(path, 'utf8')) as Json
}

async function editJson(edit: (json: Json) => void): Promise<void> {
  const json = await readJson()
  edit(json)
  await writeFile(path, JSON.stringify(json))
}

describe('keystore', () => {
  it('round-trips a signer', async () => {
    const signer = Signer.generate()
    await createKeystore(path, signer, PASS, FAST)
    const opened = await openKeystore(path, PASS)
    expect(opened.did).toBe(signer.did)
    expect(opened.exportSeed()).toEqual(signer.exportSeed())
    expect(await readKeystoreDid(path)).toBe(signer.did)
  })

  it('writes the documented format', async () => {
    const signer = Signer.generate()
    await createKeystore(path, signer, PASS, FAST)
    const json = await readJson()
    expect(json).toMatchObject({
      version: 1,
      type: 'icn-keystore',
      did: signer.did,
      kdf: { name: 'scrypt', N: 1024, r: 8, p: 1, dkLen: 32 },
      cipher: { name: 'aes-256-gcm' },
    })
    const b64 = (v: unknown): Buffer => Buffer.from(String(v), 'base64')
    expect(b64(json.kdf?.salt).length).toBeGreaterThanOrEqual(16)
    expect(b64(json.cipher?.iv)).toHaveLength(12)
    expect(b64(json.cipher?.tag)).toHaveLength(16)
    expect(b64(json.ciphertext)).toHaveLength(32)
    expect(b64(json.ciphertext)).not.toEqual(Buffer.from(signer.exportSeed()))
  })

  it('uses N = 2^15, r = 8, p = 1 by default', async () => {
    await createKeystore(path, Signer.generate(), PASS)
    expect((await readJson()).kdf).toMatchObject({ N: 32768, r: 8, p: 1 })
  })

  it('opens with the parameters recorded in the file', async () => {
    const signer = Signer.generate()
    await createKeystore(path, signer, PASS, { kdf: { N: 2048, r: 4, p: 2 } })
    expect((await readJson()).kdf).toMatchObject({ N: 2048, r: 4, p: 2 })
    expect((await openKeystore(path, PASS)).did).toBe(signer.did)
  })

  it('creates the file with mode 0600 and leaves no temporary file', async () => {
    await createKeystore(path, Signer.generate(), PASS, FAST)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect(await checkKeystorePermissions(path)).toEqual({ ok: true, mode: 0o600 })
    expect(await readdir(dir)).toEqual(['identity.json'])
  })

  it('reports looser permissions but still opens', async () => {
    const signer = Signer.generate()
    await createKeystore(path, signer, PASS, FAST)
    await chmod(path, 0o644)
    expect(await checkKeystorePermissions(path)).toEqual({ ok: false, mode: 0o644 })
    expect((await openKeystore(path, PASS)).did).toBe(signer.did)
  })

  it('rejects a wrong passphrase', async () => {
    await createKeystore(path, Signer.generate(), PASS, FAST)
    const err = await rejectionOf(openKeystore(path, 'wrong'))
    expect(err).toMatchObject({ code: 'WRONG_PASSPHRASE', name: 'WrongPassphraseError' })
  })

  it('normalises the passphrase (NFC and NFD spellings open the same keystore)', async () => {
    const signer = Signer.generate()
    await createKeystore(path, signer, 'caf\u00e9 cr\u00e8me', FAST)
    expect((await openKeystore(path, 'cafe\u0301 cre\u0300me')).did).toBe(signer.did)
  })

  it('a new keystore needs an 8-character passphrase; opening one never checks the length', async () => {
    for (const short of ['12345', '1234567', 'cafe\u0301 !']) {
      const err = await rejectionOf(createKeystore(path, Signer.generate(), short, FAST))
      expect(err).toBeInstanceOf(PassphraseTooShortError)
      expect(err).toMatchObject({ code: 'PASSPHRASE_TOO_SHORT' })
      expect((err as Error).message).toContain(`at least ${MIN_PASSPHRASE_LENGTH} characters`)
    }
    await expect(stat(path)).rejects.toThrow() // nothing written
    await createKeystore(path, Signer.generate(), '12345678', FAST)
    // A short passphrase at unlock is only wrong, never refused for its length.
    expect(await rejectionOf(openKeystore(path, '1234'))).toMatchObject({ code: 'WRONG_PASSPHRASE' })
    expect(MIN_PASSPHRASE_LENGTH).toBe(8)
  })

  it('rejects an empty passphrase', async () => {
    const err = await rejectionOf(createKeystore(path, Signer.generate(), '', FAST))
    expect(err).toMatchObject({ code: 'PASSPHRASE_REQUIRED' })
    await createKeystore(path, Signer.generate(), PASS, FAST)
    expect(await rejectionOf(openKeystore(path, ''))).toMatchObject({ code: 'PASSPHRASE_REQUIRED' })
  })

  it('rejects out-of-range kdf options when creating', async () => {
    await expect(createKeystore(path, Signer.generate(), PASS, { kdf: { N: 1000 } })).rejects.toThrow(
      RangeError,
    )
    await expect(createKeystore(path, Signer.generate(), PASS, { kdf: { N: 512 } })).rejects.toThrow(
      RangeError,
    )
    await expect(createKeystore(path, Signer.generate(), PASS, { kdf: { r: 0 } })).rejects.toThrow(RangeError)
    await expect(createKeystore(path, Signer.generate(), PASS, { kdf: { p: 17 } })).rejects.toThrow(
      RangeError,
    )
  })

  it('never overwrites an existing keystore', async () => {
    await createKeystore(path, Signer.generate(), PASS, FAST)
    const before = await readFile(path)
    const err = await rejectionOf(createKeystore(path, Signer.generate(), PASS, FAST))
    expect(err).toMatchObject({ code: 'KEYSTORE_EXISTS', name: 'KeystoreExistsError' })
    expect(await readFile(path)).toEqual(before)
  })

  it('lets exactly one of two concurrent creates win', async () => {
    const results = await Promise.allSettled([
      createKeystore(path, Signer.generate(), PASS, FAST),
      createKeystore(path, Signer.generate(), PASS, FAST),
    ])
    const rejected = results.filter((r) => r.status === 'rejected')
    expect(rejected).toHaveLength(1)
    expect((rejected[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'KEYSTORE_EXISTS' })
    expect((await openKeystore(path, PASS)).did).toBe(await readKeystoreDid(path))
    expect(await readdir(dir)).toEqual(['identity.json'])
  })

  it('reports a missing keystore', async () => {
    const missing = join(dir, 'nope.json')
    expect(await rejectionOf(openKeystore(missing, PASS))).toMatchObject({ code: 'KEYSTORE_NOT_FOUND' })
    expect(await rejectionOf(readKeystoreDid(missing))).toMatchObject({ code: 'KEYSTORE_NOT_FOUND' })
    expect(await rejectionOf(checkKeystorePermissions(missing))).toMatchObject({ code: 'KEYSTORE_NOT_FOUND' })
  })

  it('honours an aborted signal', async () => {
    const signal = AbortSignal.abort()
    await expect(createKeystore(path, Signer.generate(), PASS, { ...FAST, signal })).rejects.toThrow()
    expect(await readdir(dir)).toEqual([])
  })

  describe('corruption', () => {
    let signer: Signer

    beforeEach(async () => {
      signer = Signer.generate()
      await createKeystore(path, signer, PASS, FAST)
    })

    async function expectCorrupt(): Promise<void> {
      const err = await rejectionOf(openKeystore(path, PASS))
      expect(err).toBeInstanceOf(KeystoreCorruptError)
      expect(err).toMatchObject({ code: 'KEYSTORE_CORRUPT', name: 'KeystoreCorruptError' })
      expect(await rejectionOf(readKeystoreDid(path))).toMatchObject({ code: 'KEYSTORE_CORRUPT' })
    }

    it('unparsable JSON', async () => {
      const text = await readFile(path, 'utf8')
      await writeFile(path, text.slice(0, text.length / 2))
      await expectCorrupt()
    })

    it('not an object', async () => {
      await writeFile(path, '[1,2,3]')
      await expectCorrupt()
    })

    it('wrong version', async () => {
      await editJson((j) => {
        j.version = 2
      })
      await expectCorrupt()
    })

    it('wrong type', async () => {
      await editJson((j) => {
        j.type = 'ethereum-keystore'
      })
      await expectCorrupt()
    })

    it('missing ciphertext', async () => {
      await editJson((j) => {
        delete j.ciphertext
      })
      await expectCorrupt()
    })

    it('missing kdf', async () => {
      await editJson((j) => {
        delete j.kdf
      })
      await expectCorrupt()
    })

    it('ciphertext of the wrong length', async () => {
      await editJson((j) => {
        j.ciphertext = Buffer.alloc(31).toString('base64')
      })
      await expectCorrupt()
    })

    it('ciphertext that is not base64', async () => {
      await editJson((j) => {
        j.ciphertext = '!!not base64!!'
      })
      await expectCorrupt()
    })

    it('iv of the wrong length', async () => {
      await editJson((j) => {
        j.cipher!.iv = Buffer.alloc(16).toString('base64')
      })
      await expectCorrupt()
    })

    it('did that is not a did:key', async () => {
      await editJson((j) => {
        j.did = 'did:web:example.com'
      })
      await expectCorrupt()
    })

    for (const [name, kdf] of [
      ['N not a power of two', { N: 1000 }],
      ['N too small', { N: 512 }],
      ['N too large', { N: 2 ** 23 }],
      ['r = 0', { r: 0 }],
      ['r = 33', { r: 33 }],
      ['p = 17', { p: 17 }],
      ['N as a string', { N: '1024' }],
      ['dkLen 64', { dkLen: 64 }],
      ['another kdf', { name: 'pbkdf2' }],
      ['too much memory', { N: 2 ** 22, r: 32 }],
    ] as const) {
      it(`kdf params out of bounds: ${name}`, async () => {
        await editJson((j) => {
          Object.assign(j.kdf!, kdf)
        })
        await expectCorrupt()
      })
    }

    it('a file far too large to be a keystore', async () => {
      await writeFile(path, ' '.repeat(100_000))
      await expectCorrupt()
    })

    it('a decrypted key that does not match the recorded DID', async () => {
      // Encrypt the seed correctly, under the other DID as associated data,
      // so decryption succeeds and only the DID check can catch it.
      const other = Signer.generate()
      const json = await readJson()
      const salt = randomBytes(32)
      const iv = randomBytes(12)
      const key = scryptSync(PASS, salt, 32, { N: 1024, r: 8, p: 1 })
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      cipher.setAAD(Buffer.from(other.did))
      const ciphertext = Buffer.concat([cipher.update(signer.exportSeed()), cipher.final()])
      const forged = {
        ...json,
        did: other.did,
        kdf: { ...json.kdf, salt: salt.toString('base64') },
        cipher: {
          name: 'aes-256-gcm',
          iv: iv.toString('base64'),
          tag: cipher.getAuthTag().toString('base64'),
        },
        ciphertext: ciphertext.toString('base64'),
      }
      await writeFile(path, JSON.stringify(forged))
      const err = await rejectionOf(openKeystore(path, PASS))
      expect(err).toMatchObject({ code: 'KEYSTORE_CORRUPT' })
      expect((err as Error).message).toMatch(/does not match|not did:key|belongs to/)
    })

    it('altered authenticated bytes fail authentication like a wrong passphrase', async () => {
      // AES-GCM cannot distinguish a flipped ciphertext bit from a wrong key.
      await editJson((j) => {
        const bytes = Buffer.from(String(j.ciphertext), 'base64')
        bytes[0] = (bytes[0] ?? 0) ^ 1
        j.ciphertext = bytes.toString('base64')
      })
      expect(await rejectionOf(openKeystore(path, PASS))).toMatchObject({ code: 'WRONG_PASSPHRASE' })
    })

    it('a swapped DID fails authentication (the DID is associated data)', async () => {
      await editJson((j) => {
        j.did = Signer.generate().did
      })
      expect(await rejectionOf(openKeystore(path, PASS))).toMatchObject({ code: 'WRONG_PASSPHRASE' })
    })
  })
})
