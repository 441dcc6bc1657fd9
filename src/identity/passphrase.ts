import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import { PassphraseFileError, PassphraseMismatchError, PassphraseRequiredError } from './errors.js'
import { checkNewPassphrase } from './keystore.js'

/** Name of the environment variable that may hold the keystore passphrase. */
export const PASSPHRASE_ENV = 'ICN_PASSPHRASE'

/** Where `resolvePassphrase` may look for the passphrase. */
export interface ResolvePassphraseOptions {
  /** A file whose contents (minus one trailing newline) are the passphrase. */
  passphraseFile?: string
  /** Environment to read `ICN_PASSPHRASE` from; defaults to `process.env`. */
  env?: NodeJS.ProcessEnv
  /** Whether a prompt is allowed when the input is a terminal. */
  interactive?: boolean
  /** Ask twice and require both answers to match (for a new keystore). */
  confirm?: boolean
  /**
   * The passphrase is for a new keystore: whatever its source, it must have MIN_PASSPHRASE_LENGTH characters
   * (PassphraseTooShortError). Never set it to unlock an existing keystore.
   */
  forNewKeystore?: boolean
  /** Terminal to read from; defaults to `process.stdin`. */
  input?: NodeJS.ReadableStream
  /** Where prompts go; defaults to `process.stderr`, keeping stdout clean. */
  output?: NodeJS.WritableStream
  /** Prompt text; defaults to `Passphrase: `. */
  prompt?: string
  signal?: AbortSignal
}

const HOW_TO_GIVE = `set ${PASSPHRASE_ENV}, pass --passphrase-file <path>, or run in a terminal to be prompted`

function notEmpty(passphrase: string, source: string): string {
  if (passphrase.length === 0) {
    throw new PassphraseRequiredError(
      `the passphrase from ${source} is empty; a passphrase must not be empty`,
      {
        details: { source },
      },
    )
  }
  return passphrase
}

/** Removes exactly one trailing `\n` or `\r\n`. */
function stripOneNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2)
  if (text.endsWith('\n')) return text.slice(0, -1)
  return text
}

function isTty(stream: NodeJS.ReadableStream): boolean {
  return 'isTTY' in stream && stream.isTTY === true
}

/**
 * Reads one answer per prompt from a terminal without echoing it: readline
 * drives the terminal (raw mode, line editing) but echoes into a muted stream.
 */
function promptHidden(
  input: NodeJS.ReadableStream,
  output: NodeJS.WritableStream,
  prompts: readonly string[],
  signal: AbortSignal | undefined,
): Promise<string[]> {
  const muted = new Writable({
    write(_chunk, _encoding, callback): void {
      callback()
    },
  })
  const rl = createInterface({ input, output: muted, terminal: true, historySize: 0 })
  const answers: string[] = []
  return new Promise<string[]>((resolve, reject) => {
    let settled = false
    const finish = (error?: unknown): void => {
      if (settled) return
      settled = true
      signal?.removeEventListener('abort', onAbort)
      rl.close()
      if (error === undefined) resolve(answers)
      else reject(error)
    }
    const onAbort = (): void => {
      output.write('\n')
      finish(signal?.reason)
    }
    rl.on('line', (line: string) => {
      if (settled) return
      answers.push(line)
      output.write('\n')
      const next = prompts[answers.length]
      if (next === undefined) finish()
      else output.write(next)
    })
    rl.on('SIGINT', () => {
      output.write('\n')
      finish(new PassphraseRequiredError('passphrase entry was cancelled'))
    })
    rl.on('close', () => {
      finish(new PassphraseRequiredError('passphrase entry ended before a passphrase was given'))
    })
    if (signal?.aborted === true) {
      finish(signal.reason)
      return
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    output.write(prompts[0] ?? '')
  })
}

/**
 * The keystore passphrase, from the first source that applies:
 * 1. `passphraseFile` (its contents, minus one trailing newline);
 * 2. the `ICN_PASSPHRASE` environment variable;
 * 3. a prompt without echo, if `interactive` and the input is a terminal
 *    (asked twice with `confirm`).
 * Otherwise throws PassphraseRequiredError naming the three options. An empty
 * passphrase is always rejected; with `forNewKeystore` a short one too
 * (PassphraseTooShortError).
 */
export async function resolvePassphrase(options: ResolvePassphraseOptions = {}): Promise<string> {
  const passphrase = await findPassphrase(options)
  if (options.forNewKeystore === true) checkNewPassphrase(passphrase)
  return passphrase
}

async function findPassphrase(options: ResolvePassphraseOptions): Promise<string> {
  options.signal?.throwIfAborted()
  const { passphraseFile } = options
  if (passphraseFile !== undefined) {
    let text: string
    try {
      text = await readFile(passphraseFile, { encoding: 'utf8', signal: options.signal })
    } catch (err) {
      if (options.signal?.aborted === true) throw err
      throw new PassphraseFileError(
        `cannot read passphrase file ${passphraseFile}: ${err instanceof Error ? err.message : String(err)}`,
        { details: { path: passphraseFile }, cause: err },
      )
    }
    return notEmpty(stripOneNewline(text), `passphrase file ${passphraseFile}`)
  }

  const fromEnv = (options.env ?? process.env)[PASSPHRASE_ENV]
  if (fromEnv !== undefined) return notEmpty(fromEnv, PASSPHRASE_ENV)

  if (options.interactive === true) {
    const input = options.input ?? process.stdin
    if (isTty(input)) {
      const prompt = options.prompt ?? 'Passphrase: '
      const prompts = options.confirm === true ? [prompt, 'Repeat passphrase: '] : [prompt]
      const answers = await promptHidden(input, options.output ?? process.stderr, prompts, options.signal)
      const [first = '', second] = answers
      notEmpty(first, 'the prompt')
      if (options.forNewKeystore === true) checkNewPassphrase(first)
      if (options.confirm === true && second !== first) {
        throw new PassphraseMismatchError('the two passphrases entered do not match')
      }
      return first
    }
  }

  throw new PassphraseRequiredError(`a passphrase is required: ${HOW_TO_GIVE}`)
}
