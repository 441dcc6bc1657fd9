#!/usr/bin/env node
// Build dist/ with esbuild: the CLI (which is also the node) as dist/icn.js, and each benchmark as
// dist/bench/<name>.js. One ES module per entry plus shared chunks in dist/chunks/: a process loads a handful of
// files instead of hundreds of small modules, which is most of a node's start-up time. Code loaded lazily
// (`await import(...)`, e.g. the node itself behind `icn node start`) stays in its own chunk, so `icn --help`
// does not load it. Type checking is not done here: `npm run typecheck` (tsc) does it, and `npm test` runs both.
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

await rm(outdir, { recursive: true, force: true })
const result = await build({
  absWorkingDir: root,
  entryPoints: {
    icn: 'src/cli/main.ts',
    'bench/dag': 'bench/dag.ts',
    'bench/net': 'bench/net.ts',
    'bench/net-baseline-main': 'bench/net-baseline-main.ts',
    'bench/net-peer': 'bench/net-peer.ts',
    'bench/startup': 'bench/startup.ts',
  },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunks/[name]-[hash]',
  external,
  sourcemap: 'linked',
  // CommonJS dependencies bundled into ES modules still call require() for Node's built-ins.
  banner: {
    js: "import { createRequire as __icnCreateRequire } from 'node:module'; const require = __icnCreateRequire(import.meta.url);",
  },
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
})
const outputs = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith('.js'))
const bytes = outputs.reduce((n, [, o]) => n + o.bytes, 0)
const secs = ((performance.now() - t0) / 1000).toFixed(1)
process.stderr.write(
  `icn: built ${relative(root, outdir)}/ in ${secs} s (${outputs.length} files, ${(bytes / 2 ** 20).toFixed(1)} MiB)\n`,
)
