#!/usr/bin/env node
// Build dist/ with esbuild: the CLI twice, and each benchmark as dist/bench/<name>.js (one ES module each).
//
// - dist/icn.js: the CLI as one ES module plus chunks in dist/chunks/, for every command but `icn node start`.
//   A process loads a handful of files instead of hundreds of small modules, and code loaded lazily
//   (`await import(...)`, e.g. the node itself) stays in its own chunk, so `icn --help` does not load it.
// - dist/node.cjs: the same CLI as one CommonJS script, which bin/icn runs for `icn node start` through a V8 code
//   cache (dist/loader.js, from src/cli/code-cache.ts). A node runs most of the code, and compiling it (the
//   bundle, then each function on its first call) was the largest part of its start-up CPU; `vm.Script` can
//   take a cache of that on every Node version, where Node 20 has none for ES modules. For the other commands
//   the single script costs more than it saves (reading and deserialising the whole of it: `icn --help` took
//   0.23 s against 0.20 s with the chunks), so they keep the chunks. Type checking is not done here: `npm run typecheck` (tsc) does it, and `npm test` runs both.
//
// Kept out of the bundle (loaded from node_modules at run time): native addons and optional native drivers.
//
// It writes what it does to stderr: npm shows a `prepare` script's output only when asked to, so the
// committed .npmrc sets foreground-scripts, and this says what the wait is for.
import { readFile, rm, writeFile } from 'node:fs/promises'
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
  // The CLI for `icn node start`: one CommonJS script, for the code cache. `import.meta.url` (used to find bin/,
  // web/ and deploy/ above the bundle) becomes the bundle's own file URL.
  build({
    ...common,
    format: 'cjs',
    entryPoints: { node: 'src/cli/main.ts' },
    outExtension: { '.js': '.cjs' },
    outdir,
    define: { 'import.meta.url': '__icnBundleUrl' },
    banner: { js: "var __icnBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  }),
  // What bin/icn runs first: loads dist/icn.cjs through its code cache.
  build({ ...common, entryPoints: { loader: 'src/cli/code-cache.ts' }, outdir }),
  // The benchmarks: each one file, next to the others (bench/net-baseline.ts forks ./net-peer.js beside it).
  build({
    ...common,
    entryPoints: ['alerts', 'dag', 'ledger', 'net', 'net-baseline-main', 'net-peer', 'startup'].map(
      (n) => `bench/${n}.ts`,
    ),
    outdir: join(outdir, 'bench'),
  }),
])
// esbuild writes every non-ASCII character of strings, templates and identifiers as an escape (its default
// charset), but copies comments as they are. With those few comment characters replaced, node.cjs is ASCII,
// which the loader reads as latin1: a third of the time of decoding 5 MB as UTF-8, on every start.
const script = join(outdir, 'node.cjs')
await writeFile(script, (await readFile(script, 'utf8')).replace(/[^\x00-\x7f]/gu, '?'))

const outputs = results
  .flatMap((r) => Object.entries(r.metafile.outputs))
  .filter(([f]) => f.endsWith('.js') || f.endsWith('.cjs'))
const bytes = outputs.reduce((n, [, o]) => n + o.bytes, 0)
const secs = ((performance.now() - t0) / 1000).toFixed(1)
process.stderr.write(
  `icn: built ${relative(root, outdir)}/ in ${secs} s (${outputs.length} files, ${(bytes / 2 ** 20).toFixed(1)} MiB)\n`,
)
