import { resolve } from 'node:path'
import { InvalidOptionError, type StoreKind } from '../node/options.js'

// Settings only (no process, store or network code), so the CLI can import this file for its flag defaults
// and `icn --help` stays fast.

/** Most nodes `icn devnet up` starts: every node dials every other, so the mesh grows as N². */
export const MAX_DEVNET_NODES = 50
export const DEFAULT_DEVNET_NODES = 3
/** Seconds `up` and `restart` wait for every node to be ready and connected. */
export const DEFAULT_DEVNET_TIMEOUT_S = 60
/** Name of the federation a devnet creates. */
export const DEVNET_FEDERATION_NAME = 'devnet'

/** The devnet folder: ICN_DEVNET_DIR, else `./.icn-devnet`. */
export function defaultDevnetDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.ICN_DEVNET_DIR ?? '.icn-devnet'
}

/** What `Devnet.up` needs to know besides callbacks. */
export interface DevnetSettings {
  /** Folder holding the state file, the genesis, the shared passphrase and one data folder per node. */
  dir: string
  /** Number of nodes, 1..MAX_DEVNET_NODES. Default 3 (or, for a stopped devnet, the nodes it has). */
  nodes?: number
  store: StoreKind
  /** PostgreSQL URL with store = postgres; node K uses database `<db>_devnet_nodeK` on that server. */
  pgUrl?: string
  /** Node K (from 1) gets API port basePort + 2(K-1) and p2p port basePort + 2(K-1) + 1; else free ports. */
  basePort?: number
  /** How long to wait for every node to be ready and connected. */
  timeoutMs: number
  /** Replace a stopped devnet in `dir` by a new one (else `up` restarts its nodes). */
  fresh: boolean
}

/** Check the settings; throws InvalidOptionError (a usage error: exit 2). Returns them with `dir` absolute. */
export function checkDevnetSettings(s: DevnetSettings): DevnetSettings {
  if (s.nodes !== undefined && (!Number.isInteger(s.nodes) || s.nodes < 1 || s.nodes > MAX_DEVNET_NODES))
    throw new InvalidOptionError(
      `--nodes must be a whole number from 1 to ${MAX_DEVNET_NODES}, got ${s.nodes}`,
    )
  if (s.store !== 'sqlite' && s.store !== 'postgres')
    throw new InvalidOptionError(`--store must be sqlite or postgres, got ${JSON.stringify(s.store)}`)
  if (s.store === 'postgres') {
    if (!s.pgUrl) throw new InvalidOptionError('--store postgres needs --pg-url postgres://USER@HOST:PORT/DB')
    let url: URL
    try {
      url = new URL(s.pgUrl)
    } catch {
      throw new InvalidOptionError('--pg-url is not a URL (expected postgres://USER@HOST:PORT/DB)')
    }
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')
      throw new InvalidOptionError('--pg-url must start with postgres:// or postgresql://')
  } else if (s.pgUrl) {
    throw new InvalidOptionError('--pg-url is only used with --store postgres')
  }
  const n = s.nodes ?? DEFAULT_DEVNET_NODES
  if (
    s.basePort !== undefined &&
    (!Number.isInteger(s.basePort) || s.basePort < 1024 || s.basePort + 2 * n - 1 > 65535)
  )
    throw new InvalidOptionError(
      `--base-port must be a whole number from 1024 to ${65536 - 2 * n} for ${n} nodes (two ports each), got ${s.basePort}`,
    )
  if (!Number.isFinite(s.timeoutMs) || s.timeoutMs <= 0)
    throw new InvalidOptionError(`--timeout must be a positive number of seconds, got ${s.timeoutMs / 1000}`)
  if (!s.dir) throw new InvalidOptionError('--dir must not be empty')
  return { ...s, dir: resolve(s.dir) }
}
