/**
 * Loads the bundled CLI for `icn node start` (`dist/node.cjs`, one CommonJS script) through a V8 code cache, on
 * every Node version.
 *
 * Compiling the 5 MB bundle, and then each function the first time it runs, was the largest part of a node's
 * start-up CPU: with ten nodes starting on two cores, every millisecond of it is paid ten times over. V8 can
 * serialise the bytecode of a script, including the functions compiled while it ran, and accept it on the next
 * compile of the same source (`vm.Script` `cachedData`). Node 22's `module.enableCompileCache()` does the same
 * but writes the cache right after the first compile, so it holds little more than the top-level code, and Node
 * 20 has no such cache for ES modules at all.
 *
 * The cache is written when a node that found none (or had it rejected: another V8, other V8 flags) stops
 * gracefully (its stop calls `save`), so it holds what a whole run compiled; a start that fails (a wrong
 * passphrase, a bad flag) writes none, lest its few functions become the cache every later start takes. There
 * is one per role (so far only `node`), each keyed by the bundle's path, size and modification time (V8 itself
 * checks only the source's length), the Node version and the architecture; the newest 8 per role and Node
 * version are kept. Caches live in a folder of this user's
 * own (`$TMPDIR/icn-code-cache-<uid>`, mode 0700, refused if another user owns it or others may write to it,
 * as a cache file is code this process runs). Anything wrong with a cache (missing, unreadable, rejected)
 * costs only the compile it would have saved: it never stops the command. `NODE_DISABLE_COMPILE_CACHE=1`
 * (Node's own switch) turns it off; `ICN_CODE_CACHE_DIR` moves it.
 */
import { createHash } from 'node:crypto'
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { dirname, join } from 'node:path'
import vm from 'node:vm'

/** Where `loadBundle` leaves a `CodeCacheHandle` for the code it runs (which cannot import this file). */
export const CODE_CACHE = Symbol.for('icn.codeCache')

/** What the bundle finds at `globalThis[CODE_CACHE]`. */
export interface CodeCacheHandle {
  state: CodeCacheState
  /** Write the cache now if this load found none or had it rejected (a node calls it when it stops). */
  save(): void
}

/** What happened to the code cache of one load. */
export type CodeCacheState =
  /** V8 took the cache: little was compiled. */
  | 'used'
  /** A cache was there but V8 refused it (another V8 or other flags); `save` writes a new one. */
  | 'rejected'
  /** No cache yet; `save` writes one. */
  | 'none'
  /** Turned off (NODE_DISABLE_COMPILE_CACHE), or no usable folder for it. */
  | 'off'

export interface BundleLoad {
  /** The bundle's `module.exports`. */
  exports: Record<string, unknown>
  cache: CodeCacheState
  /** The cache file of this load (absent when `off`). */
  cacheFile?: string
  /** Write the cache if this load found none or had it rejected. */
  save(): void
}

export interface LoadOptions {
  /** What the process runs (`node` for `icn node start`): each role has its own cache. */
  role: string
  /** Where the caches live (default: ICN_CODE_CACHE_DIR, else `$TMPDIR/icn-code-cache-<uid>`). */
  cacheDir?: string
}

/**
 * A folder this user alone may write to, created if need be; undefined if it cannot be made so (it is then not
 * used: a cache file there is code this process would run).
 */
function ownFolder(dir: string): string | undefined {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const st = statSync(dir)
    const uid = process.getuid?.()
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0)
      return undefined
    return dir
  } catch {
    return undefined
  }
}

function cacheFolder(opts: LoadOptions): string | undefined {
  const env = process.env
  if (env.NODE_DISABLE_COMPILE_CACHE) return undefined
  const dir =
    opts.cacheDir ??
    env.ICN_CODE_CACHE_DIR ??
    join(os.tmpdir(), `icn-code-cache-${process.getuid?.() ?? 'user'}`)
  return ownFolder(dir)
}

/** Load the CommonJS bundle at `path` through its code cache, run it, and return its exports. */
export function loadBundle(path: string, opts: LoadOptions): BundleLoad {
  // ASCII (scripts/build.mjs makes it so), so latin1 reads it as UTF-8 would, at a third of the cost.
  const source = readFileSync(path, 'latin1')
  const dir = cacheFolder(opts)
  let cacheFile: string | undefined
  let cachedData: Buffer | undefined
  if (dir) {
    const st = statSync(path)
    const key = createHash('sha256')
      .update(`${path}\0${st.size}\0${st.mtimeMs}\0${process.version}\0${process.arch}`)
      .digest('hex')
      .slice(0, 16)
    cacheFile = join(dir, `${opts.role}-${process.version}-${key}.v8cache`)
    try {
      cachedData = readFileSync(cacheFile)
    } catch {
      cachedData = undefined
    }
  }
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: path,
    ...(cachedData ? { cachedData } : {}),
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  })
  const cache: CodeCacheState = !cacheFile
    ? 'off'
    : cachedData
      ? script.cachedDataRejected
        ? 'rejected'
        : 'used'
      : 'none'
  let saved = false
  const save = () => {
    if (saved || !cacheFile || cache === 'used' || cache === 'off') return
    saved = true
    const tmp = `${cacheFile}.${process.pid}.tmp`
    try {
      writeFileSync(tmp, script.createCachedData(), { mode: 0o600 })
      renameSync(tmp, cacheFile)
      prune(dirname(cacheFile), `${opts.role}-${process.version}-`)
    } catch {
      try {
        unlinkSync(tmp)
      } catch {
        // nothing was written
      }
    }
  }
  // For the node: its 'node running' log line, and its stop, which calls save.
  ;(globalThis as Record<symbol, unknown>)[CODE_CACHE] = { state: cache, save } satisfies CodeCacheHandle
  const module = { exports: {} as Record<string, unknown> }
  const run = script.runInThisContext() as (...args: unknown[]) => void
  run.call(module.exports, module.exports, createRequire(path), module, path, dirname(path))
  return { exports: module.exports, cache, ...(cacheFile ? { cacheFile } : {}), save }
}

/** Caches kept per role and Node version: those of the builds used last (other checkouts, earlier builds). */
const KEEP_CACHES = 8

/** Remove all but the `KEEP_CACHES` newest caches whose names start with `prefix`. */
function prune(dir: string, prefix: string): void {
  const files = readdirSync(dir)
    .filter((name) => name.startsWith(prefix) && name.endsWith('.v8cache'))
    .map((name) => {
      const file = join(dir, name)
      try {
        return { file, mtime: statSync(file).mtimeMs }
      } catch {
        return { file, mtime: 0 }
      }
    })
    .sort((a, b) => b.mtime - a.mtime)
  for (const { file } of files.slice(KEEP_CACHES)) {
    try {
      unlinkSync(file)
    } catch {
      // another process removed it first
    }
  }
}
