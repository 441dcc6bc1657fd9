import { homedir } from 'node:os'
import { join } from 'node:path'
import { IcnError } from '../identity/index.js'

export type StoreKind = 'sqlite' | 'postgres'

/** Settings of one node; the CLI's flag defaults come from `defaultOptions` too. */
export interface NodeOptions {
  /** Folder holding the keystore, API key, config and (for SQLite) the database. */
  dataDir: string
  store: StoreKind
  /** PostgreSQL connection URL, required with store = postgres. */
  pgUrl?: string
  /** host:port the HTTP API listens on (port 0 picks a free one). */
  apiListen: string
  logLevel: string
  /** SQLite durability: NORMAL survives a process crash, FULL also a power cut. */
  sqliteSynchronous: 'NORMAL' | 'FULL'
  /** How long a graceful stop waits for in-flight requests. */
  shutdownTimeoutMs: number
  /** Federation genesis file (a CAR holding the signed genesis block). Without it the node runs alone, offline. */
  genesis?: string
  /** libp2p listen multiaddrs (used with a genesis). */
  p2pListen: string[]
  /** Multiaddrs (with /p2p/PEER_ID) of federation nodes to dial at start. */
  bootstrap: string[]
  /** File holding a libp2p pre-shared key (private network); every node of the federation needs the same one. */
  pskFile?: string
  /** Deadline of every PostgreSQL store operation, in ms (ICN_STORE_TIMEOUT_MS; default 10 000). */
  storeTimeoutMs: number
}

export const DEFAULT_API_PORT = 7420
export const DEFAULT_P2P_PORT = 7421

export const defaultOptions: NodeOptions = {
  dataDir: process.env.ICN_DATA_DIR ?? join(homedir(), '.icn'),
  store: 'sqlite',
  apiListen: `127.0.0.1:${DEFAULT_API_PORT}`,
  logLevel: process.env.ICN_LOG_LEVEL ?? 'info',
  sqliteSynchronous: 'NORMAL',
  shutdownTimeoutMs: 10_000,
  p2pListen: [`/ip4/0.0.0.0/tcp/${DEFAULT_P2P_PORT}`],
  bootstrap: [],
  storeTimeoutMs: process.env.ICN_STORE_TIMEOUT_MS ? Number(process.env.ICN_STORE_TIMEOUT_MS) : 10_000,
}

/** A setting is out of range or inconsistent (e.g. --store postgres without --pg-url). */
export class InvalidOptionError extends IcnError {
  override readonly name = 'InvalidOptionError'
  constructor(message: string) {
    super('INVALID_OPTION', message)
  }
}

/**
 * The log levels a node accepts: pino's own (`pino.levels.values`) and `silent`. Listed here, not read from pino,
 * so that checking settings loads no logger; a unit test keeps the two lists equal.
 */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/** Parse `host:port` (IPv6 as `[::1]:port`). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text)
  const port = m ? Number(m[3]) : Number.NaN
  if (!m || port > 65535)
    throw new InvalidOptionError(`listen address must be HOST:PORT, got ${JSON.stringify(text)}`)
  return { host: (m[1] ?? m[2])!, port }
}

/** Check options are consistent; throws InvalidOptionError. */
export function checkOptions(opts: NodeOptions): void {
  if (opts.store !== 'sqlite' && opts.store !== 'postgres')
    throw new InvalidOptionError(`--store must be sqlite or postgres, got ${JSON.stringify(opts.store)}`)
  if (opts.store === 'postgres') {
    if (!opts.pgUrl)
      throw new InvalidOptionError('--store postgres needs --pg-url postgres://USER@HOST:PORT/DB')
    let url: URL
    try {
      url = new URL(opts.pgUrl)
    } catch {
      throw new InvalidOptionError('--pg-url is not a URL (expected postgres://USER@HOST:PORT/DB)')
    }
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')
      throw new InvalidOptionError('--pg-url must start with postgres:// or postgresql://')
  }
  if (!(LOG_LEVELS as readonly string[]).includes(opts.logLevel))
    throw new InvalidOptionError(
      `--log-level (or ICN_LOG_LEVEL) must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(opts.logLevel)}`,
    )
  parseListen(opts.apiListen)
  if (!Number.isInteger(opts.storeTimeoutMs) || opts.storeTimeoutMs < 100)
    throw new InvalidOptionError(
      `the store deadline (ICN_STORE_TIMEOUT_MS) must be a whole number of ms, at least 100, got ${opts.storeTimeoutMs}`,
    )
  for (const [flag, values] of [
    ['--p2p-listen', opts.p2pListen],
    ['--bootstrap', opts.bootstrap],
  ] as const)
    for (const v of values)
      if (!v.startsWith('/'))
        throw new InvalidOptionError(
          `${flag} must be a multiaddr such as /ip4/127.0.0.1/tcp/7421, got ${JSON.stringify(v)}`,
        )
  if (!opts.genesis && opts.bootstrap.length > 0)
    throw new InvalidOptionError(
      '--bootstrap needs --genesis FILE: a node joins the network of one federation',
    )
  if (!opts.genesis && opts.pskFile) throw new InvalidOptionError('--psk-file needs --genesis FILE')
}

/** A PostgreSQL URL with any password masked, for logs and messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '<invalid url>'
  }
}
