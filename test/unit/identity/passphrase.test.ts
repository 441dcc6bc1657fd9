import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { PassphraseRequiredError, resolvePassphrase } from '../../../src/identity/index.js'

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-passphrase-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function fileWith(contents: string): Promise<string> {
  const path = join(dir, 'passphrase')
  await writeFile(path, contents, { mode: 0o600 })
  return path
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (err) {
    return err
  }
  throw new Error('expected the promise to reject')
}

/** A fake terminal: input that claims to be a TTY, and output that records what was written. */
function fakeTerminal(): { input: PassThrough; output: Writable; written: () => string } {
  const input = Object.assign(new PassThrough(), { isTTY: true, setRawMode: (): void => {} })
  let text = ''
  const output = new Writable({
    write(chunk: Buffer, _encoding, callback): void {
      text += chunk.toString()
      callback()
    },
  })
  return { input, output, written: () => text }
}

/** Types each answer once the matching prompt has appeared. */
function answer(terminal: ReturnType<typeof fakeTerminal>, replies: Array<[string, string]>): void {
  let next = 0
  const timer = setInterval(() => {
    const reply = replies[next]
    if (reply === undefined) {
      clearInterval(timer)
      return
    }
    const [prompt, text] = reply
    const occurrences = terminal.written().split(prompt).length - 1
    const seen = replies.slice(0, next + 1).filter(([p]) => p === prompt).length
    if (occurrences >= seen) {
      terminal.input.write(text)
      next++
    }
  }, 5)
}

describe('resolvePassphrase', () => {
  it('reads a file and strips one trailing newline', async () => {
    expect(await resolvePassphrase({ passphraseFile: await fileWith('s3cret\n'), env: {} })).toBe('s3cret')
    expect(await resolvePassphrase({ passphraseFile: await fileWith('s3cret\r\n'), env: {} })).toBe('s3cret')
    expect(await resolvePassphrase({ passphraseFile: await fileWith('s3cret\n\n'), env: {} })).toBe(
      's3cret\n',
    )
    expect(await resolvePassphrase({ passphraseFile: await fileWith(' s3cret '), env: {} })).toBe(' s3cret ')
  })

  it('prefers the file over the environment', async () => {
    const passphraseFile = await fileWith('from-file\n')
    expect(await resolvePassphrase({ passphraseFile, env: { ICN_PASSPHRASE: 'from-env' } })).toBe('from-file')
  })

  it('rejects an empty file', async () => {
    for (const contents of ['', '\n', '\r\n']) {
      const err = await rejectionOf(resolvePassphrase({ passphraseFile: await fileWith(contents), env: {} }))
      expect(err).toMatchObject({ code: 'PASSPHRASE_REQUIRED' })
      expect((err as Error).message).toMatch(/must not be empty/)
    }
  })

  it('reports a missing file', async () => {
    const err = await rejectionOf(resolvePassphrase({ passphraseFile: join(dir, 'missing'), env: {} }))
    expect(err).toMatchObject({ code: 'PASSPHRASE_FILE_UNREADABLE' })
    expect((err as Error).message).toContain(join(dir, 'missing'))
  })

  it('for a new keystore, refuses a short passphrase from any source; otherwise takes it', async () => {
    const passphraseFile = await fileWith('short\n')
    for (const options of [{ passphraseFile, env: {} }, { env: { ICN_PASSPHRASE: 'short' } }]) {
      expect(await resolvePassphrase(options)).toBe('short')
      const err = await rejectionOf(resolvePassphrase({ ...options, forNewKeystore: true }))
      expect(err).toMatchObject({ code: 'PASSPHRASE_TOO_SHORT', name: 'PassphraseTooShortError' })
    }
    expect(await resolvePassphrase({ env: { ICN_PASSPHRASE: 'long enough' }, forNewKeystore: true })).toBe(
      'long enough',
    )
  })

  it('reads ICN_PASSPHRASE', async () => {
    expect(await resolvePassphrase({ env: { ICN_PASSPHRASE: 'from-env' } })).toBe('from-env')
  })

  it('rejects an empty ICN_PASSPHRASE', async () => {
    const err = await rejectionOf(resolvePassphrase({ env: { ICN_PASSPHRASE: '' } }))
    expect(err).toMatchObject({ code: 'PASSPHRASE_REQUIRED' })
    expect((err as Error).message).toMatch(/ICN_PASSPHRASE.*must not be empty/)
  })

  it('without a source and non-interactive, says how to give one', async () => {
    const err = await rejectionOf(resolvePassphrase({ env: {} }))
    expect(err).toBeInstanceOf(PassphraseRequiredError)
    expect(err).toMatchObject({ code: 'PASSPHRASE_REQUIRED', name: 'PassphraseRequiredError' })
    const message = (err as Error).message
    expect(message).toContain('ICN_PASSPHRASE')
    expect(message).toContain('--passphrase-file')
    expect(message).toContain('terminal')
  })

  it('does not prompt when the input is not a terminal', async () => {
    const input = new PassThrough()
    const err = await rejectionOf(resolvePassphrase({ env: {}, interactive: true, input }))
    expect(err).toMatchObject({ code: 'PASSPHRASE_REQUIRED' })
  })

  describe('interactive', () => {
    it('prompts without echo', async () => {
      const terminal = fakeTerminal()
      answer(terminal, [['Passphrase: ', 'hunter2\r']])
      const passphrase = await resolvePassphrase({ env: {}, interactive: true, ...terminal })
      expect(passphrase).toBe('hunter2')
      expect(terminal.written()).toContain('Passphrase: ')
      expect(terminal.written()).not.toContain('hunter2')
    })

    it('asks twice with confirm and accepts matching answers', async () => {
      const terminal = fakeTerminal()
      answer(terminal, [
        ['Passphrase: ', 'same\r'],
        ['Repeat passphrase: ', 'same\r'],
      ])
      expect(await resolvePassphrase({ env: {}, interactive: true, confirm: true, ...terminal })).toBe('same')
    })

    it('rejects mismatching answers', async () => {
      const terminal = fakeTerminal()
      answer(terminal, [
        ['Passphrase: ', 'one\r'],
        ['Repeat passphrase: ', 'two\r'],
      ])
      const err = await rejectionOf(
        resolvePassphrase({ env: {}, interactive: true, confirm: true, ...terminal }),
      )
      expect(err).toMatchObject({ code: 'PASSPHRASE_MISMATCH' })
    })

    it('for a new keystore, refuses a short answer at the prompt', async () => {
      const terminal = fakeTerminal()
      answer(terminal, [
        ['Passphrase: ', 'short\r'],
        ['Repeat passphrase: ', 'short\r'],
      ])
      const err = await rejectionOf(
        resolvePassphrase({ env: {}, interactive: true, confirm: true, forNewKeystore: true, ...terminal }),
      )
      expect(err).toMatchObject({ code: 'PASSPHRASE_TOO_SHORT' })
    })

    it('rejects an empty answer', async () => {
      const terminal = fakeTerminal()
      answer(terminal, [['Passphrase: ', '\r']])
      const err = await rejectionOf(resolvePassphrase({ env: {}, interactive: true, ...terminal }))
      expect(err).toMatchObject({ code: 'PASSPHRASE_REQUIRED' })
      expect((err as Error).message).toMatch(/must not be empty/)
    })

    it('treats Ctrl-C as cancellation', async () => {
      const terminal = fakeTerminal()
      answer(terminal, [['Passphrase: ', '\u0003']])
      const err = await rejectionOf(resolvePassphrase({ env: {}, interactive: true, ...terminal }))
      expect(err).toMatchObject({ code: 'PASSPHRASE_REQUIRED' })
      expect((err as Error).message).toMatch(/cancelled/)
    })

    it('uses the environment before prompting', async () => {
      const terminal = fakeTerminal()
      const passphrase = await resolvePassphrase({
        env: { ICN_PASSPHRASE: 'env' },
        interactive: true,
        ...terminal,
      })
      expect(passphrase).toBe('env')
      expect(terminal.written()).toBe('')
    })
  })
})
