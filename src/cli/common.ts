import { readFile } from 'node:fs/promises'
import type { ApiClient } from '../api/index.js'
import { IcnError, resolvePassphrase } from '../identity/index.js'
import { readApiKey, readConfig, readRunningNode } from '../node/datadir.js'
import { defaultOptions } from '../node/options.js'

// The CLI loads the API, store and node modules only in the commands that use them (`await import`), and
// reads settings and the data folder straight from their files, so quick commands start quickly.

/** Exit statuses of every command. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const

/** A command failed with a message for the user; `exitCode` 2 means bad input or usage. */
export class CliError extends IcnError {
  override readonly name = 'CliError'
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
    code = exitCode === EXIT.usage ? 'USAGE' : 'FAILED',
  ) {
    super(code, message)
  }
}

export interface GlobalOpts {
  json?: boolean
  api?: string
  apiKey?: string
  dataDir?: string
  passphraseFile?: string
}

/** Print a result: JSON for scripts with --json, else the human text. */
export function output(opts: { json?: boolean }, value: unknown, text?: string | (() => string)): void {
  if (opts.json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`)
  else
    process.stdout.write(
      `${typeof text === 'function' ? text() : (text ?? JSON.stringify(value, null, 2))}\n`,
    )
}

/**
 * A client for the node the user means: --api/--api-key, else ICN_API/ICN_API_KEY, else the data folder: the
 * address the node running on it recorded in `node.json` (where it really listens, whatever --api-listen it was
 * started with), else `config.json`; and its key file. So `icn … --data-dir D` talks to the node started from D.
 */
export async function clientFor(opts: GlobalOpts): Promise<ApiClient> {
  const dataDir = opts.dataDir ?? defaultOptions.dataDir
  let api = opts.api ?? process.env.ICN_API
  let apiKey = opts.apiKey ?? process.env.ICN_API_KEY
  if (!api || !apiKey) {
    if (!api) api = (await readRunningNode(dataDir))?.api
    const cfg = api ? undefined : await readConfig(dataDir).catch(() => undefined)
    if (!api && cfg) api = `http://${cfg.apiListen}`
    if (!apiKey) apiKey = await readApiKey(dataDir).catch(() => undefined)
  }
  if (!api) api = `http://${defaultOptions.apiListen}`
  if (!/^https?:\/\//.test(api))
    throw new CliError(`--api must be an http(s) URL, got ${JSON.stringify(api)}`, EXIT.usage)
  const { ApiClient: Client } = await import('../api/index.js')
  return new Client({ baseUrl: api, apiKey })
}

/**
 * The passphrase: --passphrase-file, ICN_PASSPHRASE, or a prompt on a terminal. For a new keystore
 * (`newKeystore`) the prompt asks twice and the passphrase must be long enough (PASSPHRASE_TOO_SHORT).
 */
export async function passphraseFor(opts: GlobalOpts, newKeystore = false): Promise<string> {
  return resolvePassphrase({
    passphraseFile: opts.passphraseFile,
    env: process.env,
    interactive: true,
    confirm: newKeystore,
    forNewKeystore: newKeystore,
  })
}

/** Bytes from --message-hex or --file (exactly one). */
export async function messageFrom(opts: { messageHex?: string; file?: string }): Promise<Uint8Array> {
  if ((opts.messageHex === undefined) === (opts.file === undefined))
    throw new CliError('give exactly one of --message-hex HEX or --file F', EXIT.usage)
  if (opts.file !== undefined) {
    try {
      return new Uint8Array(await readFile(opts.file))
    } catch (err) {
      throw new CliError(`cannot read ${opts.file}: ${(err as Error).message}`, EXIT.usage)
    }
  }
  return parseHex(opts.messageHex!, '--message-hex')
}

export function parseHex(text: string, flag: string): Uint8Array {
  const clean = text.trim()
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean))
    throw new CliError(`${flag} must be hexadecimal with an even number of digits`, EXIT.usage)
  return new Uint8Array(Buffer.from(clean, 'hex'))
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}
