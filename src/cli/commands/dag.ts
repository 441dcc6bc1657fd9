import { createWriteStream } from 'node:fs'
import { readFile, rename, rm } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Command } from 'commander'
import { CliError, clientFor, EXIT, type GlobalOpts, output } from '../common.js'

const apiOptions = (cmd: Command): Command =>
  cmd
    .option('--api <url>', 'node API URL (or ICN_API)')
    .option('--api-key <key>', 'operator API key (or ICN_API_KEY)')
    .option('--data-dir <dir>', 'find the API URL and key in this data folder')
    .option('--json', 'print JSON')

async function api(): Promise<typeof import('../../api/index.js')['routes']> {
  return (await import('../../api/index.js')).routes
}

export function registerDag(program: Command): void {
  const dag = program
    .command('dag')
    .description('Blocks: store and read values, pins, gc, CAR backup and restore, reindex derived state')

  apiOptions(
    dag
      .command('put')
      .description("Store a JSON value as a signed block on the node's chain; prints its CID")
      .option('--value <json>', 'the value, as JSON')
      .option('--file <file>', 'read the JSON value from a file'),
  ).action(async (opts: GlobalOpts & { value?: string; file?: string }) => {
    const routes = await api()
    if ((opts.value === undefined) === (opts.file === undefined))
      throw new CliError('give exactly one of --value JSON or --file F', EXIT.usage)
    let text: Uint8Array
    try {
      text = opts.value !== undefined ? Buffer.from(opts.value) : await readFile(opts.file!)
    } catch (err) {
      throw new CliError(`cannot read ${opts.file}: ${(err as Error).message}`, EXIT.usage)
    }
    let value: unknown
    try {
      // Refused, not changed: big integers, invalid Unicode, too deep (as the API would refuse them).
      value = (await import('../../api/json-body.js')).parseJsonValue(text)
    } catch (err) {
      throw new CliError((err as Error).message, EXIT.usage)
    }
    const r = await (await clientFor(opts)).call(routes.putValue, { body: { value } })
    output(opts, r, r.cid)
  })

  apiOptions(
    dag
      .command('get <cid>')
      .description('Print a stored value (icn.value/v1 records), or with --block the block itself as JSON')
      .option('--block', 'print the block record instead of the value'),
  ).action(async (cid: string, opts: GlobalOpts & { block?: boolean }) => {
    const routes = await api()
    const client = await clientFor(opts)
    if (opts.block) {
      const b = await client.call(routes.getBlock, { params: { cid }, query: { format: 'json' } })
      output({ json: true }, b)
      return
    }
    const v = await client.call(routes.getValue, { params: { cid } })
    output(opts, v, JSON.stringify(v.value, null, 2))
  })

  apiOptions(
    dag
      .command('export')
      .description('Write every block (or those reachable from --root) to a CAR file')
      .requiredOption('--out <file>', 'CAR file to write')
      .option('--root <cid>', 'export only this block and what it links'),
  ).action(async (opts: GlobalOpts & { out: string; root?: string }) => {
    const routes = await api()
    const res = await (await clientFor(opts)).fetch(routes.exportCar, { query: { root: opts.root } })
    if (!res.body) throw new CliError('the node sent no body')
    const tmp = `${opts.out}.partial`
    try {
      await pipeline(
        Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
        createWriteStream(tmp),
      )
      await rename(tmp, opts.out)
    } catch (err) {
      await rm(tmp, { force: true })
      throw new CliError(`export failed: ${(err as Error).message}`)
    }
    output(opts, { out: opts.out }, `wrote ${opts.out}`)
  })

  apiOptions(
    dag
      .command('import <file>')
      .description('Import a CAR file; every block is validated and a bad file imports nothing'),
  ).action(async (file: string, opts: GlobalOpts) => {
    const routes = await api()
    let bytes: Uint8Array
    try {
      bytes = new Uint8Array(await readFile(file))
    } catch (err) {
      throw new CliError(`cannot read ${file}: ${(err as Error).message}`, EXIT.usage)
    }
    const r = await (await clientFor(opts)).call(routes.importCar, { rawBody: bytes })
    output(
      opts,
      r,
      `imported ${r.blocks} blocks (${r.stored} new, ${r.duplicates} already present, ${r.equivocations} equivocations)`,
    )
  })

  apiOptions(
    dag.command('verify').description('Re-check every stored block: hash, encoding, signature'),
  ).action(async (opts: GlobalOpts) => {
    const routes = await api()
    const r = await (await clientFor(opts)).call(routes.verify)
    output(opts, r, () =>
      [
        `checked ${r.checked} blocks, ${r.bad.length} bad`,
        ...r.bad.map((b) => `  ${b.cid}: ${b.code} ${b.message}`),
      ].join('\n'),
    )
    if (r.bad.length > 0) process.exitCode = EXIT.failed
  })

  apiOptions(
    dag.command('gc').description("Delete blocks no pin, evidence or the node's chain reaches"),
  ).action(async (opts: GlobalOpts) => {
    const routes = await api()
    const r = await (await clientFor(opts)).call(routes.gc)
    output(opts, r, `removed ${r.removed} blocks`)
  })

  dag
    .command('reindex')
    .description(
      'Offline (stop the node first): rebuild every derived-state table from the blocks and check that each comes out identical; exit 1 if one differs',
    )
    .option('--data-dir <dir>', "the node's data folder")
    .option('--store <kind>', "sqlite or postgres (default: the data folder's config)")
    .option('--pg-url <url>', "PostgreSQL URL (default: the data folder's config)")
    .option('--genesis <file>', 'the federation genesis (default: the one the node pinned in its store)')
    .option('--json', 'print JSON')
    .action(
      async (opts: GlobalOpts & { store?: string; pgUrl?: string; genesis?: string }): Promise<void> => {
        if (opts.store !== undefined && opts.store !== 'sqlite' && opts.store !== 'postgres')
          throw new CliError(
            `--store must be sqlite or postgres, got ${JSON.stringify(opts.store)}`,
            EXIT.usage,
          )
        const { defaultOptions } = await import('../../node/options.js')
        const { reindexDataDir } = await import('../reindex.js')
        let shown = 0
        const r = await reindexDataDir(
          {
            dataDir: opts.dataDir ?? defaultOptions.dataDir,
            store: opts.store,
            pgUrl: opts.pgUrl,
            genesis: opts.genesis,
          },
          // Progress on stderr, at most every 10,000 blocks.
          (p) => {
            if (p.blocks - shown < 10_000) return
            shown = p.blocks
            process.stderr.write(`reindex: ${p.blocks} blocks, ${p.chains} chains done\n`)
          },
        )
        output(opts, r, () =>
          [
            `reindexed ${r.blocks} blocks in ${r.ms} ms (${r.blocksPerSecond} blocks/s); ${r.projections.length} projections, ${r.tables} tables, ${r.rows} rows`,
            r.identical
              ? 'every table came out identical'
              : `DIFFERENT after the rebuild: ${r.differing.join(', ')} (derived state must follow from the blocks alone: please report this)`,
          ].join('\n'),
        )
        if (!r.identical) process.exitCode = EXIT.failed
      },
    )

  const pin = dag.command('pin').description('Pins keep a block and all it links through garbage collection')
  apiOptions(pin.command('add <cid>').description('Pin a stored block')).action(
    async (cid: string, opts: GlobalOpts) => {
      const routes = await api()
      const r = await (await clientFor(opts)).call(routes.addPin, { params: { cid } })
      output(opts, r, `pinned ${r.cid}`)
    },
  )
  apiOptions(pin.command('rm <cid>').description('Unpin a block')).action(
    async (cid: string, opts: GlobalOpts) => {
      const routes = await api()
      const r = await (await clientFor(opts)).call(routes.removePin, { params: { cid } })
      output(opts, r, `unpinned ${r.cid}`)
    },
  )
  apiOptions(pin.command('ls').description('List pins')).action(async (opts: GlobalOpts) => {
    const routes = await api()
    const r = await (await clientFor(opts)).call(routes.listPins)
    output(opts, r, r.pins.join('\n'))
  })

  apiOptions(dag.command('chains').description('Chain heads the store knows')).action(
    async (opts: GlobalOpts) => {
      const routes = await api()
      const r = await (await clientFor(opts)).call(routes.chains)
      output(opts, r, r.chains.map((c) => `${c.chain}  seq ${c.seq}  ${c.cid}`).join('\n'))
    },
  )

  apiOptions(dag.command('stats').description('Counts of blocks, bytes, chains, pins, evidence')).action(
    async (opts: GlobalOpts) => {
      const routes = await api()
      const r = await (await clientFor(opts)).call(routes.stats)
      output(
        opts,
        r,
        Object.entries(r)
          .map(([k, v]) => `${k.padEnd(9)}${v}`)
          .join('\n'),
      )
    },
  )
}
