/**
 * The code cache bin/icn runs `icn node start` through (src/cli/code-cache.ts): a cache is written where none
 * was, taken on the next load, keyed by the bundle so that a rebuilt one is never run with the old code's
 * cache, refused in a folder others may write to, thrown away when V8 rejects it, and off when asked. Each case
 * loads a small CommonJS bundle of its own and checks what it exports, so a wrong cache would show as wrong code.
 * Each load is a process of its own running the built loader (dist/loader.js), as bin/icn does: within one
 * process V8 compiles a source it has seen from its own memory and never looks at the cache file.
 */
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { CodeCacheState } from '../../../src/cli/code-cache.js'

const LOADER = fileURLToPath(new URL('../../../dist/loader.js', import.meta.url))

let dir: string
let cacheDir: string
let bundle: string

function writeBundle(answer: number): void {
  // Enough functions that the cache is more than a header, one of them run (so compiled) before the save.
  const fns = Array.from({ length: 50 }, (_, i) => `function f${i}(x) { return x + ${i} }`).join('\n')
  writeFileSync(
    bundle,
    `${fns}\nconst { sep } = require('node:path')\nexports.sep = sep\nexports.main = () => f1(${answer - 1})\n`,
  )
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'icn-code-cache-test-'))
  cacheDir = join(dir, 'cache')
  bundle = join(dir, 'node.cjs')
  writeBundle(42)
})
afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

interface Load {
  cache: CodeCacheState
  cacheFile?: string
  answer: number
  sep: string
}

/** Load the bundle in a new process, as bin/icn does, and save its cache as a node's stop does. */
function load(env: NodeJS.ProcessEnv = {}): Load {
  const script = `
    const { loadBundle } = await import(${JSON.stringify(pathToFileURL(LOADER).href)})
    const l = loadBundle(${JSON.stringify(bundle)}, { role: 'node', cacheDir: ${JSON.stringify(cacheDir)} })
    const out = { cache: l.cache, cacheFile: l.cacheFile, answer: l.exports.main(), sep: l.exports.sep }
    // What a node does when it stops: through the handle the bundle finds on globalThis.
    globalThis[Symbol.for('icn.codeCache')].save()
    console.log(JSON.stringify(out))`
  const { NODE_DISABLE_COMPILE_CACHE: _, ...rest } = process.env
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...rest, ...env },
    encoding: 'utf8',
  })
  return JSON.parse(out) as Load
}

describe('loadBundle', () => {
  it('runs the bundle, writes its cache at save, and takes the cache on the next load', () => {
    const first = load()
    expect(first.cache).toBe('none')
    expect(first.answer).toBe(42)
    expect(first.sep).toBe('/')
    expect(first.cacheFile && existsSync(first.cacheFile)).toBe(true)
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.tmp'))).toEqual([])

    const second = load()
    expect(second.cache).toBe('used')
    expect(second.cacheFile).toBe(first.cacheFile)
    expect(second.answer).toBe(42)
  })

  it('a rebuilt bundle gets a cache of its own, not the old one', () => {
    const first = load()
    writeBundle(7)
    // Even with the same size and a clock that does not move: the key has the modification time.
    utimesSync(bundle, new Date(), new Date(Date.now() + 5_000))
    const rebuilt = load()
    expect(rebuilt.cache).toBe('none')
    expect(rebuilt.cacheFile).not.toBe(first.cacheFile)
    expect(rebuilt.answer).toBe(7)
    expect(load().cache).toBe('used')
  })

  it('a cache V8 rejects (here: garbage) is not used, the bundle still runs, and the next save replaces it', () => {
    const first = load()
    writeFileSync(first.cacheFile!, Buffer.alloc(4096, 0x5a))
    const second = load()
    expect(second.cache).toBe('rejected')
    expect(second.answer).toBe(42)
    expect(load().cache).toBe('used')
  })

  it('is off with NODE_DISABLE_COMPILE_CACHE, and writes nothing', () => {
    const l = load({ NODE_DISABLE_COMPILE_CACHE: '1' })
    expect(l.cache).toBe('off')
    expect(l.answer).toBe(42)
    expect(existsSync(cacheDir)).toBe(false)
  })

  it('refuses a cache folder that others may write to (a cache file is code this process runs)', () => {
    load()
    chmodSync(cacheDir, 0o777)
    const l = load()
    expect(l.cache).toBe('off')
    expect(l.answer).toBe(42)
  })

  it('keeps the newest 8 caches of a role', () => {
    for (let i = 0; i < 11; i++) {
      writeBundle(100 + i)
      utimesSync(bundle, new Date(), new Date(Date.now() + i * 10_000))
      expect(load().answer).toBe(100 + i)
    }
    expect(readdirSync(cacheDir).filter((f) => f.startsWith('node-')).length).toBe(8)
  })
})
