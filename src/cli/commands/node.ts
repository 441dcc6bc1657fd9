import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Command } from 'commander'
import {
  initDataDir,
  readApiKey,
  readConfig,
  removeRunningNode,
  removeRunningNodeSync,
  unlockIdentity,
  writeRunningNode,
} from '../../node/datadir.js'
import {
  checkOptions,
  defaultOptions,
  LOG_LEVELS,
  type NodeOptions,
  type StoreKind,
} from '../../node/options.js'
import { clientFor, type GlobalOpts, output, passphraseFor } from '../common.js'
import { peerIdOf } from './id.js'

interface StartOpts extends GlobalOpts {
  dataDir?: string
  store?: StoreKind
  pgUrl?: string
  apiListen?: string
  logLevel?: string
  dev?: boolean
  keep?: boolean
  genesis?: string
  p2pListen?: string[]
  bootstrap?: string[]
  pskFile?: string
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

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
    .option('--genesis <file>', 'join the federation of this genesis file (made by icn federation create)')
    .option(
      '--p2p-listen <multiaddr>',
      `libp2p listen address, repeatable (default ${defaultOptions.p2pListen.join(' ')})`,
      collect,
    )
    .option(
      '--bootstrap <multiaddr>',
      'a federation node to dial, /ip4/HOST/tcp/PORT/p2p/PEER_ID; repeatable',
      collect,
    )
    .option('--psk-file <file>', 'libp2p pre-shared key (private network; every node needs the same file)')
    .option(
      '--log-level <level>',
      `${LOG_LEVELS.join(', ')} (default ${defaultOptions.logLevel}, or ICN_LOG_LEVEL)`,
    )
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
      const { routes } = await import('../../api/index.js')
      const info = await (await clientFor(opts)).call(routes.getNode)
      // Without a federation the node has no libp2p host, but its peer id is still a function of its DID.
      const peerId = info.peerId ?? (await peerIdOf(info.did))
      output(
        opts,
        info,
        () =>
          `DID      ${info.did}\npeer id  ${peerId}${info.peerId ? '' : ' (not on a network: no --genesis)'}\n` +
          info.listenAddrs.map((a) => `p2p      ${a}\n`).join('') +
          (info.federation ? `federation ${info.federation}\n` : '') +
          `version  ${info.version}\nstore    ${info.store}\nuptime   ${info.uptimeSeconds}s\n` +
          `chain    ${info.chain}\nhead     ${info.head ? `${info.head.seq} ${info.head.cid}` : '(empty)'}`,
      )
    })
}

async function startNode(opts: StartOpts): Promise<void> {
  const fromFlags = (dataDir: string, cfg?: Awaited<ReturnType<typeof readConfig>>): NodeOptions => ({
    ...defaultOptions,
    dataDir,
    store: opts.store ?? cfg?.store ?? defaultOptions.store,
    pgUrl: opts.pgUrl ?? cfg?.pgUrl,
    apiListen: opts.apiListen ?? cfg?.apiListen ?? defaultOptions.apiListen,
    logLevel: opts.logLevel ?? defaultOptions.logLevel,
    genesis: opts.genesis,
    p2pListen: opts.p2pListen ?? defaultOptions.p2pListen,
    bootstrap: opts.bootstrap ?? [],
    pskFile: opts.pskFile,
  })
  let dataDir = opts.dataDir ?? defaultOptions.dataDir
  // Bad flags and a missing or invalid genesis fail (exit 2) before the passphrase is asked for or anything is
  // written.
  checkOptions(fromFlags(dataDir, opts.dev ? undefined : await readConfig(dataDir)))
  const federation = opts.genesis
    ? await (await import('../../federation/index.js')).readGenesisFile(opts.genesis)
    : undefined
  let passphrase: string
  let devDir: string | undefined
  if (opts.dev) {
    dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'icn-dev-')))
    if (!opts.keep && !opts.dataDir) devDir = dataDir
    passphrase = randomBytes(24).toString('base64url')
  } else {
    passphrase = await passphraseFor(opts)
  }
  const cleanup = async (): Promise<void> => {
    if (devDir) await rm(devDir, { recursive: true, force: true })
  }
  try {
    if (opts.dev) {
      const o = fromFlags(dataDir)
      await initDataDir({ dataDir, store: o.store, pgUrl: o.pgUrl, apiListen: o.apiListen }, passphrase)
    }
    // The node and its modules (store drivers, libp2p, API server) are loaded once the input is known good.
    const { createLogger } = await import('../../observability/index.js')
    const { IcnNode } = await import('../../node/index.js')
    const options = fromFlags(dataDir, await readConfig(dataDir))
    checkOptions(options)
    const signer = await unlockIdentity(dataDir, passphrase)
    const apiKey = await readApiKey(dataDir)
    if (!apiKey) throw new Error(`no API key file in ${dataDir}; run icn init again in a new folder`)
    const logger = createLogger({ level: options.logLevel })
    const node = await IcnNode.create(options, { signer, apiKey, logger, federation })

    let signals = 0
    let recorded = false
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++
      if (signals > 1) {
        logger.warn({ signal: sig }, 'second signal: exiting now')
        if (recorded) removeRunningNodeSync(dataDir)
        if (devDir) rmSync(devDir, { recursive: true, force: true })
        process.exit(130)
      }
      logger.info({ signal: sig }, 'signal received: stopping (send it again to force)')
      void node
        .stop()
        .then(() => removeRunningNode(dataDir, process.pid))
        .then(cleanup)
        .then(() => {
          saveCodeCache()
          process.exit(0)
        })
        .catch((err: unknown) => {
          logger.error({ err }, 'stop failed')
          process.exit(1)
        })
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)

    await node.start()
    const info = {
      did: node.did,
      api: node.apiUrl,
      apiKey,
      dataDir,
      store: options.store,
      pid: process.pid,
      peerId: node.network?.peerId.toString() ?? null,
      listenAddrs: node.network?.listenAddrs ?? [],
      federation: node.federation?.id ?? null,
    }
    // Where this node really listens, for `icn … --data-dir D` (config.json has only what init was given).
    await writeRunningNode(dataDir, {
      version: 1,
      pid: process.pid,
      did: info.did,
      api: info.api,
      peerId: info.peerId,
      listenAddrs: info.listenAddrs,
      startedAt: new Date().toISOString(),
    }).then(
      () => {
        recorded = true
      },
      (err: unknown) => logger.warn({ err, dataDir }, 'cannot record the running node in node.json'),
    )
    if (opts.json) process.stdout.write(`${JSON.stringify(info)}\n`)
    else
      output(
        opts,
        info,
        `ICN node running${opts.dev ? ` (dev: throwaway data folder ${dataDir}${devDir ? ', removed on exit' : ''})` : ''}\n` +
          `  DID      ${info.did}\n  API      ${info.api}\n  API key  ${apiKey}\n  store    ${options.store}\n` +
          (info.federation
            ? `  federation ${node.federation?.name} ${info.federation}\n  peer id  ${info.peerId}\n` +
              info.listenAddrs.map((a) => `  p2p      ${a}\n`).join('')
            : '  federation: none (start with --genesis FILE to join one)\n') +
          `Try it:\n  bin/icn dag put --api ${info.api} --api-key ${apiKey} --value '{"hello":"world"}'\n` +
          `  curl ${info.api}/v1/node\nStop with Ctrl-C.`,
      )
  } catch (err) {
    await cleanup()
    throw err
  }
  await new Promise<void>(() => {})
}

/**
 * Have bin/icn's code cache written, if this start found none: after a whole run it holds what a node compiles
 * (see src/cli/code-cache.ts; nothing to do when the node was not started through bin/icn).
 */
function saveCodeCache(): void {
  ;(
    (globalThis as Record<symbol, unknown>)[Symbol.for('icn.codeCache')] as { save?: () => void } | undefined
  )?.save?.()
}
