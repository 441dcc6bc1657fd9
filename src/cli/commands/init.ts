import type { Command } from 'commander'
// Settings and the data folder only: `icn init` must not load the node, the store drivers or the API server.
import { initDataDir } from '../../node/datadir.js'
import { checkOptions, defaultOptions, type StoreKind } from '../../node/options.js'
import { type GlobalOpts, output, passphraseFor } from '../common.js'

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('Create a data folder: a new identity (encrypted keystore), an API key and the node config')
    .option('--data-dir <dir>', 'data folder', defaultOptions.dataDir)
    .option('--store <kind>', 'block store: sqlite or postgres', defaultOptions.store)
    .option(
      '--pg-url <url>',
      'PostgreSQL URL (with --store postgres); the database must exist (createdb NAME), init checks it',
    )
    .option('--api-listen <host:port>', 'where the node API will listen', defaultOptions.apiListen)
    .option(
      '--passphrase-file <file>',
      'read the keystore passphrase from this file (else ICN_PASSPHRASE or a prompt)',
    )
    .option('--json', 'print JSON')
    .action(
      async (opts: GlobalOpts & { store: StoreKind; pgUrl?: string; apiListen: string; dataDir: string }) => {
        checkOptions({
          ...defaultOptions,
          dataDir: opts.dataDir,
          store: opts.store,
          pgUrl: opts.pgUrl,
          apiListen: opts.apiListen,
        })
        // The database must exist (the node makes its tables, not the database): say how to create it now,
        // rather than when the node starts. Before the passphrase: nothing is asked or written for a bad URL.
        if (opts.store === 'postgres') await (await import('../pg.js')).checkDatabase(opts.pgUrl!)
        const passphrase = await passphraseFor(opts, true)
        const r = await initDataDir(
          { dataDir: opts.dataDir, store: opts.store, pgUrl: opts.pgUrl, apiListen: opts.apiListen },
          passphrase,
        )
        output(
          opts,
          r,
          () =>
            `Created ICN identity in ${r.dataDir}\n  DID      ${r.did}\n  API key  ${r.apiKey}\n` +
            `Start the node with: icn node start --data-dir ${r.dataDir}`,
        )
      },
    )
}
