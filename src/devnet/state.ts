import { open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
// The data-folder helpers only (like the CLI's common.ts): the devnet must not load the node or the store.
import { pidAlive, writeSecretFile } from '../node/datadir.js'
import type { StoreKind } from '../node/options.js'
import { DevnetBusyError, DevnetNotFoundError, DevnetStateError } from './errors.js'
import type { DevnetMonitorState } from './monitor.js'

export const STATE_FILE = 'devnet.json'
export const PASSPHRASE_FILE = 'passphrase'
export const GENESIS_FILE = 'genesis.car'
export const LOCK_FILE = '.devnet.lock'
export const NODE_LOG_FILE = 'node.log'
/** Folder of the founding members' folders, `members/member1` … (member K is homed at node K). */
export const MEMBERS_DIR = 'members'

/** A devnet node's founding member: its own identity (not the node's), homed at the node. */
export interface DevnetMemberState {
  did: string
  /** Absolute path of its member folder (`<dir>/members/memberK`): what `--member DIR` takes. */
  dir: string
}

/** One node of the devnet as recorded in `devnet.json`. */
export interface DevnetNodeState {
  /** `node1` … `nodeN`. */
  name: string
  /** Absolute path of its data folder (`<dir>/<name>`). */
  dataDir: string
  did: string
  peerId: string
  /** `http://127.0.0.1:PORT`. */
  apiUrl: string
  apiKey: string
  /** Its dialable multiaddr, `/ip4/127.0.0.1/tcp/PORT/p2p/PEER_ID`. */
  p2pAddr: string
  /** Process id of the last start; null once `down` stopped it (or before it was first started). */
  pid: number | null
  /** Arguments of `icn` that start it (`node start --data-dir …`); `restart` and `up` reuse them. */
  args: string[]
  /** Its own database with store = postgres. */
  pgUrl?: string
  /** Where its stdout and stderr go. */
  log: string
  /** Its founding member (absent in a devnet created before devnets had members). */
  member?: DevnetMemberState
}

/** The whole `devnet.json`. */
export interface DevnetState {
  version: 1
  name: string
  createdAt: string
  /** Absolute path of the devnet folder. */
  dir: string
  /** Path of the federation's genesis file (CAR). */
  genesis: string
  /** Federation id from the genesis. */
  federation: string
  store: StoreKind
  /** The --pg-url given to `up` (the server the node databases live on), with store = postgres. */
  pgUrl?: string
  nodes: DevnetNodeState[]
  /** When `down` last stopped every node. */
  stoppedAt?: string
  /** Prometheus and Alertmanager, once `up --monitor` started them. */
  monitor?: DevnetMonitorState
}

export function statePath(dir: string): string {
  return join(dir, STATE_FILE)
}

/** The state in `dir`, or undefined if there is none. Throws DevnetStateError for a file that is not one. */
export async function readState(dir: string): Promise<DevnetState | undefined> {
  const path = statePath(dir)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new DevnetStateError(path, (err as Error).message)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new DevnetStateError(path, `not JSON (${(err as Error).message})`)
  }
  const s = json as Partial<DevnetState>
  if (typeof s !== 'object' || s === null || s.version !== 1 || !Array.isArray(s.nodes))
    throw new DevnetStateError(path, 'not a version 1 devnet state')
  for (const n of s.nodes)
    if (typeof n?.name !== 'string' || typeof n.dataDir !== 'string' || !Array.isArray(n.args))
      throw new DevnetStateError(path, 'a node entry lacks its name, data folder or arguments')
  for (const n of s.nodes)
    if (n.member !== undefined && (typeof n.member?.did !== 'string' || typeof n.member.dir !== 'string'))
      throw new DevnetStateError(path, `the member of ${n.name} lacks its DID or folder`)
  return s as DevnetState
}

/** The state in `dir`; throws DevnetNotFoundError if there is none. */
export async function loadState(dir: string): Promise<DevnetState> {
  const state = await readState(dir)
  if (!state) throw new DevnetNotFoundError(dir)
  return state
}

/** Write the state atomically (temp file, fsync, rename), mode 0600: it holds the API keys. */
export async function writeState(state: DevnetState): Promise<void> {
  await writeSecretFile(statePath(state.dir), `${JSON.stringify(state, null, 2)}\n`)
}

/**
 * Hold `<dir>/.devnet.lock` while `fn` runs, so two devnet commands never change one devnet at once. A lock
 * left by a process that is gone is taken over.
 */
export async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  // Calls in one process (a benchmark driving the Devnet class) queue; other processes meet the lock file.
  const previous = queues.get(dir) ?? Promise.resolve()
  const run = previous.then(() => withFileLock(dir, fn))
  const tail = run.catch(() => {})
  queues.set(dir, tail)
  void tail.then(() => {
    if (queues.get(dir) === tail) queues.delete(dir)
  })
  return run
}

const queues = new Map<string, Promise<unknown>>()

async function withFileLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const path = join(dir, LOCK_FILE)
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600)
      await fh.writeFile(`${process.pid}\n`)
      await fh.close()
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw err
      const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && pidAlive(owner))
        throw new DevnetBusyError(dir, owner)
      await unlink(path).catch(() => {})
    }
  }
  try {
    return await fn()
  } finally {
    await unlink(path).catch(() => {})
  }
}
