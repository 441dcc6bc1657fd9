import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import {
  createKeystore,
  IcnError,
  openKeystore,
  readKeystoreDid,
  type Signer,
  Signer as SignerClass,
} from '../identity/index.js'
import type { NodeOptions, StoreKind } from './options.js'

/** What `icn init` writes besides the keystore. */
export interface DataDirConfig {
  version: 1
  store: StoreKind
  pgUrl?: string
  apiListen: string
}

export const KEYSTORE_FILE = 'keystore.json'
export const API_KEY_FILE = 'api-key'
export const CONFIG_FILE = 'config.json'
export const SQLITE_FILE = 'store.sqlite'
/** Written by a running node: where it actually listens (see `writeRunningNode`). */
export const NODE_FILE = 'node.json'

export function dataPaths(dataDir: string): {
  keystore: string
  apiKey: string
  config: string
  sqlite: string
  node: string
} {
  return {
    node: join(dataDir, NODE_FILE),
    keystore: join(dataDir, KEYSTORE_FILE),
    apiKey: join(dataDir, API_KEY_FILE),
    config: join(dataDir, CONFIG_FILE),
    sqlite: join(dataDir, SQLITE_FILE),
  }
}

/** The data folder has no identity yet: run `icn init`. */
export class NotInitializedError extends IcnError {
  override readonly name = 'NotInitializedError'
  constructor(dataDir: string) {
    super('NOT_INITIALIZED', `no ICN identity in ${dataDir}: run \`icn init --data-dir ${dataDir}\` first`, {
      details: { dataDir },
    })
  }
}

export interface InitResult {
  did: string
  apiKey: string
  dataDir: string
}

/** Create a data folder: a new identity in an encrypted keystore, an API key and the config, all mode 0600. */
export async function initDataDir(
  opts: Pick<NodeOptions, 'dataDir' | 'store' | 'pgUrl' | 'apiListen'>,
  passphrase: string,
  kdf?: { N?: number },
): Promise<InitResult> {
  const paths = dataPaths(opts.dataDir)
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 })
  const signer = SignerClass.generate()
  await createKeystore(paths.keystore, signer, passphrase, kdf ? { kdf } : undefined)
  const apiKey = randomBytes(32).toString('base64url')
  await writeSecretFile(paths.apiKey, `${apiKey}\n`)
  const config: DataDirConfig = { version: 1, store: opts.store, apiListen: opts.apiListen }
  if (opts.pgUrl) config.pgUrl = opts.pgUrl
  await writeSecretFile(paths.config, `${JSON.stringify(config, null, 2)}\n`)
  return { did: signer.did, apiKey, dataDir: opts.dataDir }
}

/** Read the config written by `icn init`, or undefined if there is none. */
export async function readConfig(dataDir: string): Promise<DataDirConfig | undefined> {
  try {
    const cfg = JSON.parse(await readFile(dataPaths(dataDir).config, 'utf8')) as DataDirConfig
    if (cfg.version !== 1) throw new IcnError('INVALID_CONFIG', `unsupported config version in ${dataDir}`)
    return cfg
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    if (err instanceof IcnError) throw err
    throw new IcnError(
      'INVALID_CONFIG',
      `cannot read ${dataPaths(dataDir).config}: ${(err as Error).message}`,
    )
  }
}

export async function readApiKey(dataDir: string): Promise<string | undefined> {
  try {
    return (await readFile(dataPaths(dataDir).apiKey, 'utf8')).trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** The node's DID, without the passphrase. */
export async function readDid(dataDir: string): Promise<string> {
  await ensureInitialized(dataDir)
  return readKeystoreDid(dataPaths(dataDir).keystore)
}

/** Unlock the node's identity. */
export async function unlockIdentity(dataDir: string, passphrase: string): Promise<Signer> {
  await ensureInitialized(dataDir)
  return openKeystore(dataPaths(dataDir).keystore, passphrase)
}

async function ensureInitialized(dataDir: string): Promise<void> {
  try {
    await stat(dataPaths(dataDir).keystore)
  } catch {
    throw new NotInitializedError(dataDir)
  }
}

/** Write a file readable by its owner only, atomically (temp file, fsync, rename). */
export async function writeSecretFile(path: string, content: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(content)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await chmod(tmp, 0o600)
  await rename(tmp, path)
  const dir = await open(dirname(path), 'r')
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}

/** What a running node records in `<data-dir>/node.json`: where it really listens, for the CLI to find it. */
export interface RunningNodeFile {
  version: 1
  pid: number
  did: string
  /** Base URL of its HTTP API, e.g. `http://127.0.0.1:7442`. */
  api: string
  /** Its libp2p peer id and listen multiaddrs (null and [] when it runs without a federation). */
  peerId: string | null
  listenAddrs: string[]
  startedAt: string
}

/** Record the running node in `<data-dir>/node.json` (atomically: temp file, fsync, rename; mode 0600). */
export async function writeRunningNode(dataDir: string, info: RunningNodeFile): Promise<void> {
  await writeSecretFile(dataPaths(dataDir).node, `${JSON.stringify(info, null, 2)}\n`)
}

/**
 * Remove `<data-dir>/node.json` if it is the record of process `pid` (a clean stop), leaving one written by
 * another process alone.
 */
export async function removeRunningNode(dataDir: string, pid: number): Promise<void> {
  const file = await readNodeFile(dataDir)
  if (file?.pid === pid) await rm(dataPaths(dataDir).node, { force: true })
}

/** `removeRunningNode` for a process about to exit: the caller knows the file is its own. */
export function removeRunningNodeSync(dataDir: string): void {
  rmSync(dataPaths(dataDir).node, { force: true })
}

/**
 * The node running on this data folder, from `node.json`; undefined if there is none, the file is unreadable,
 * or its process is gone (a node that crashed leaves a stale file, which is ignored).
 */
export async function readRunningNode(
  dataDir: string,
  alive: (pid: number) => boolean = pidAlive,
): Promise<RunningNodeFile | undefined> {
  const file = await readNodeFile(dataDir)
  return file && alive(file.pid) ? file : undefined
}

async function readNodeFile(dataDir: string): Promise<RunningNodeFile | undefined> {
  let json: unknown
  try {
    json = JSON.parse(await readFile(dataPaths(dataDir).node, 'utf8'))
  } catch {
    return undefined
  }
  const f = json as Partial<RunningNodeFile>
  if (
    typeof f !== 'object' ||
    f === null ||
    f.version !== 1 ||
    !Number.isSafeInteger(f.pid) ||
    (f.pid as number) <= 0 ||
    typeof f.api !== 'string' ||
    !/^https?:\/\//.test(f.api)
  )
    return undefined
  return f as RunningNodeFile
}

/** The process exists (signal 0 reaches it). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists but belongs to someone else, so it is not a process this user started.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
