import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../../helpers/process.js'

// semver ships no types of its own; these are the functions used.
const semver = createRequire(import.meta.url)('semver') as {
  subset(sub: string, dom: string): boolean
  intersects(a: string, b: string): boolean
  validRange(range: string): string | null
}

/**
 * Whether every version in `ours` is in `theirs`. semver.subset compares each of our ranges with one of theirs
 * at a time, so "20.x || 22.x || 24.x" would not cover ">=22 <25": compare major by major instead.
 */
function covered(ours: string, theirs: string): boolean {
  for (const part of ours.split('||').map((p) => p.trim())) {
    for (let major = 0; major <= 60; major++) {
      if (!semver.intersects(part, `${major}.x`)) continue
      if (!semver.subset(`${part} >=${major}.0.0 <${major + 1}.0.0-0`, theirs)) return false
    }
  }
  return true
}

interface LockEntry {
  version?: string
  dev?: boolean
  optional?: boolean
  engines?: { node?: string } | string[]
}

const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }
const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, LockEntry>
}

describe('engines', () => {
  it("package.json's engines.node is a valid range", () => {
    expect(semver.validRange(pkg.engines.node)).not.toBeNull()
  })

  // npm warns EBADENGINE for every locked package whose engines.node leaves out the Node running npm install:
  // every Node version that ours admits must be admitted by each of them, or ours is not true.
  it('every package in the lockfile runs on every Node version our engines.node admits', () => {
    const ours = pkg.engines.node
    const conflicts: string[] = []
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '' || Array.isArray(entry.engines)) continue
      const theirs = entry.engines?.node
      if (!theirs || !semver.validRange(theirs)) continue
      if (!covered(ours, theirs)) conflicts.push(`${path}@${entry.version}: node ${theirs}`)
    }
    expect(conflicts, `not all of "${ours}" is supported by`).toEqual([])
  })
})
