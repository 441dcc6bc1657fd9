import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Command } from 'commander'
import { routes } from '../../api/index.js'
import {
  defaultOptions,
  IcnNode,
  initDataDir,
  type NodeOptions,
  readApiKey,
  readConfig,
  type StoreKind,
  unlockIdentity,
} from '../../node/index.js'
import { createLogger } from '../../observability/index.js'
import { clientFor, type GlobalOpts, output, passphraseFor } from '../common.js'

interface StartOpts extends GlobalOpts {
  dataDir?: string
  store?: StoreKind
  pgUrl?: string
  apiListen?: string
  logLevel?: string
  dev?: boolean
  keep?: boolean
}

export function registerNode(program: Command): void {
  const node = program.command('node').description('Run a node, or ask a running one about itself')

  node
    .command('start')
    .description(
      'Start a node: store, HTTP API and metrics in one process; stops gracefully on SIGINT/SIGTERM',
    )
    .option('--data-dir <dir>', `data folder (default ${defaultOptions.dataDir}, or ICN_DATA_DIR)`)
    .option('--dev', 'throwaway node: new identity in a temporary data folder, removed on exit')
    .option('--keep', 'with --dev: keep the temporary data folder on exit')
    .option('--store <kind>', 'block store: sqlite (embedded default) or postgres')
    .option('--pg-url <url>', 'PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/icn')
    .option('--api-listen <host:port>', `HTTP API address (default ${defaultOptions.apiListen})`)
    .option('--log-level <level>', 'trace, debug, info, warn, error', defaultOptions.logLevel)
    .option('--passphrase-file <file>', 'keystore passphrase file (else ICN_PASSPHRASE or a prompt)')
    .option('--json', 'print one JSON line with did, api, apiKey and dataDir once the node is running')
    .action(async (opts: StartOpts) => {
      await startNode(opts)
    })

  node
    .command('info')
    .description("A running node's DID, version, store, uptime and chain head")
    .option('--api <url>', 'node API URL (or ICN_API)')
    .option('--data-dir <dir>', 'find the API URL in this data folder')
    .option('--json', 'print JSON')
    .action(async (opts: GlobalOpts) => {
      const info = await (await clientFor(opts)).call(routes.getNode)
      output(
        opts,
        info,
        () =>
          `DID      ${info.did}\nversion  ${info.version}\nstore    ${info.store}\nuptime   ${info.uptimeSeconds}s\n` +
          `chain    ${info.chain}\nhead     ${info.head ? `${info.head.seq} ${info.head.cid}` : '(empty)'}`,
      )
    })
}

async function startNode(opts: StartOpts): Promise<void> {
  let dataDir = opts.dataDir ?? defaultOptions.dataDir
  let passphrase: string
  let cleanup: (() => Promise<void>) | undefined
  if (opts.dev) {
    dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'icn-dev-')))
    passphrase = randomBytes(24).toString('base64url')
    await initDataDir(
      {
        dataDir,
        store: opts.store ?? 'sqlite',
        pgUrl: opts.pgUrl,
        apiListen: opts.apiListen ?? defaultOptions.apiListen,
      },
      passphrase,
    )
    if (!opts.keep && !opts.dataDir) cleanup = () => rm(dataDir, { recursive: true, force: true })
  } else {
    passphrase = await passphraseFor(opts)
  }
  const cfg = await readConfig(dataDir)
  const options: NodeOptions = {
    ...defaultOptions,
    dataDir,
    store: opts.store ?? cfg?.store ?? defaultOptions.store,
    pgUrl: opts.pgUrl ?? cfg?.pgUrl,
    apiListen: opts.apiListen ?? cfg?.apiListen ?? defaultOptions.apiListen,
    logLevel: opts.logLevel ?? defaultOptions.logLevel,
  }
  const signer = await unlockIdentity(dataDir, passphrase)
  const apiKey = await readApiKey(dataDir)
  if (!apiKey) throw new Error(`no API key file in ${dataDir}; run icn init again in a new folder`)
  const logger = createLogger({ level: options.logLevel })
  const node = await IcnNode.create(options, { signer, apiKey, logger })

  let signals = 0
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++
    if (signals > 1) {
      logger.warn({ signal: sig }, 'second signal: exiting now')
      process.exit(130)
    }
    logger.info({ signal: sig }, 'signal received: stopping (send it again to force)')
    void node
      .stop()
      .then(() => cleanup?.())
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error({ err }, 'stop failed')
        process.exit(1)
      })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    await node.start()
  } catch (err) {
    await cleanup?.()
    throw err
  }
  const info = { did: node.did, api: node.apiUrl, apiKey, dataDir, store: options.store, pid: process.pid }
  if (opts.json) process.stdout.write(`${JSON.stringify(info)}\n`)
  else
    output(
      opts,
      info,
      () =>
        `ICN node running${opts.dev ? ` (dev: throwaway data folder ${dataDir}${cleanup ? ', removed on exit' : ''})` : ''}\n` +
        `  DID      ${info.did}\n  API      ${info.api}\n  API key  ${apiKey}\n  store    ${options.store}\n` +
        `Try it:\n  bin/icn dag put --api ${info.api} --api-key ${apiKey} --value '{"hello":"world"}'\n` +
        `  curl ${info.api}/v1/node\nStop with Ctrl-C.`,
    )
  await new Promise<void>(() => {})
}
