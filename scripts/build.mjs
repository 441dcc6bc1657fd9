#!/usr/bin/env node
// Build dist/ with esbuild: the CLI (which is also the node) as dist/icn.js, and each benchmark as
// dist/bench/<name>.js. The CLI is one ES module plus chunks in dist/chunks/: a process loads a handful of files
// instead of hundreds of small modules, which was most of a node's start-up time. Code loaded lazily
// (`await import(...)`, e.g. the node itself behind `icn node start`) stays in its own chunk, so `icn --help`
// does not load it. Each benchmark is one file. Type checking is not done here: `npm run typecheck` (tsc) does it, and `npm test` runs both.
//
// Kept out of the bundle (loaded from node_modules at run time): native addons and optional native drivers.
//
// It writes what it does to stderr: npm shows a `prepare` script's output only when asked to, so the
// committed .npmrc sets foreground-scripts, and this says what the wait is for.
import { rm } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outdir = join(root, 'dist')
const t0 = performance.now()
process.stderr.write('icn: building dist/ (esbuild: bin/icn and the benchmarks) ...\n')

/** Native addons (compiled per Node ABI) and optional peers that are not installed. */
const external = ['better-sqlite3', 'pg-native', 'pg-cloudflare']

/** What every bundle shares. */
const common = {
  absWorkingDir: root,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external,
  sourcemap: 'linked',
  // CommonJS dependencies bundled into ES modules still call require() for Node's built-ins.
  banner: {
    js: "import { createRequire as __icnCreateRequire } from 'node:module'; const require = __icnCreateRequire(import.meta.url);",
  },
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
}

await rm(outdir, { recursive: true, force: true })
const results = await Promise.all([
  // The CLI: lazily imported code in chunks of its own.
  build({
    ...common,
    entryPoints: { icn: 'src/cli/main.ts' },
    outdir,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
  }),
  // The benchmarks: each one file, next to the others (bench/net-baseline.ts forks ./net-peer.js beside it).
  build({
    ...common,
    entryPoints: ['alerts', 'dag', 'ledger', 'net', 'net-baseline-main', 'net-peer', 'startup'].map(
      (n) => `bench/${n}.ts`,
    ),
    outdir: join(outdir, 'bench'),
  }),
])
const outputs = results
  .flatMap((r) => Object.entries(r.metafile.outputs))
  .filter(([f]) => f.endsWith('.js'))
const bytes = outputs.reduce((n, [, o]) => n + o.bytes, 0)
const secs = ((performance.now() - t0) / 1000).toFixed(1)
process.stderr.write(
  `icn: built ${relative(root, outdir)}/ in ${secs} s (${outputs.length} files, ${(bytes / 2 ** 20).toFixed(1)} MiB)\n`,
)
