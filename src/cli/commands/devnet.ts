import { type Command, InvalidArgumentError } from 'commander'
import type { DevnetNodeStatus, DevnetProgress, DevnetStatus } from '../../devnet/index.js'
// Defaults only: the devnet module itself (processes, federation, network) is loaded by the actions.
import {
  DEFAULT_DEVNET_NODES,
  DEFAULT_DEVNET_TIMEOUT_S,
  defaultDevnetDir,
  MAX_DEVNET_NODES,
} from '../../devnet/options.js'
import type { StoreKind } from '../../node/options.js'
import { CliError, EXIT, output } from '../common.js'

interface DirOpts {
  dir?: string
  json?: boolean
}

interface UpOpts extends DirOpts {
  nodes?: number
  store?: StoreKind
  pgUrl?: string
  basePort?: number
  timeout: number
  fresh?: boolean
  monitor?: boolean
  alertWebhook?: string
}

const DIR_HELP = `devnet folder (default ${defaultDevnetDir()}, or ICN_DEVNET_DIR)`

function wholeNumber(value: string): number {
  if (!/^\s*\d+\s*$/.test(value)) throw new InvalidArgumentError('expected a whole number')
  return Number(value)
}

function seconds(value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError('expected a positive number of seconds')
  return n
}

/** Progress lines go to stderr, so stdout holds only the result (the table, or JSON with --json). */
function progress(e: DevnetProgress): void {
  process.stderr.write(`${e.message}\n`)
}

/** An unknown node name is the user's mistake: exit 2. */
async function run(fn: () => Promise<void>): Promise<void> {
  try {
    await fn()
  } catch (err) {
    const e = err as { code?: string; message?: string }
    if (e.code === 'UNKNOWN_NODE') throw new CliError(e.message ?? String(err), EXIT.usage, e.code)
    throw err
  }
}

async function open(opts: DirOpts) {
  const { Devnet } = await import('../../devnet/index.js')
  return Devnet.open(opts.dir ?? defaultDevnetDir(), { onProgress: progress })
}

export function registerDevnet(program: Command): void {
  const devnet = program
    .command('devnet')
    .description('Run a whole federation on this machine: one node process per member, on 127.0.0.1')

  devnet
    .command('up')
    .description(
      'Create and start a devnet (or start the stopped one in --dir again) and wait until every node is ' +
        'ready and connected to all the others; the nodes keep running after the command returns',
    )
    .option(
      '--nodes <n>',
      `number of nodes, 1 to ${MAX_DEVNET_NODES} (default ${DEFAULT_DEVNET_NODES})`,
      wholeNumber,
    )
    .option('--dir <dir>', DIR_HELP)
    .option('--store <kind>', 'block store of every node: sqlite (default) or postgres')
    .option('--pg-url <url>', 'with --store postgres: the server; node K gets database <db>_devnet_nodeK')
    .option('--base-port <port>', 'node K listens on base+2(K-1) (API) and base+2(K-1)+1 (p2p)', wholeNumber)
    .option(
      '--timeout <seconds>',
      'how long to wait for ready and connected',
      seconds,
      DEFAULT_DEVNET_TIMEOUT_S,
    )
    .option('--fresh', 'replace a stopped devnet in --dir with a new one (new identities, empty stores)')
    .option(
      '--monitor',
      'also start Prometheus (scraping every node, with deploy/prometheus/alerts.yml) and Alertmanager on free ' +
        '127.0.0.1 ports (Debian packages prometheus and prometheus-alertmanager)',
    )
    .option('--alert-webhook <url>', 'with --monitor: Alertmanager delivers the alerts to this webhook')
    .option('--json', 'print the status as JSON')
    .action((opts: UpOpts) =>
      run(async () => {
        const { Devnet } = await import('../../devnet/index.js')
        const net = await Devnet.up({
          dir: opts.dir ?? defaultDevnetDir(),
          nodes: opts.nodes,
          store: opts.store,
          pgUrl: opts.pgUrl,
          basePort: opts.basePort,
          timeoutMs: opts.timeout * 1000,
          fresh: opts.fresh,
          monitor: opts.monitor,
          alertWebhook: opts.alertWebhook,
          onProgress: progress,
        })
        const status = await net.status()
        output(
          opts,
          status,
          () => `${statusTable(status)}\nStop it with: icn devnet down --dir ${quote(status.dir)}`,
        )
      }),
    )

  devnet
    .command('demo')
    .description(
      'A short tour: start a devnet, watch a block reach every node, have member1 pay member2 (homed on ' +
        'different nodes) and read both balances on a third node, crash one, write, restart it and time ' +
        'its catch-up, then stop and remove everything',
    )
    .option('--nodes <n>', `number of nodes, 2 to ${MAX_DEVNET_NODES}`, wholeNumber, 3)
    .option('--dir <dir>', 'devnet folder (default: a new temporary folder)')
    .option('--keep', 'leave the devnet running at the end, to look around')
    .option(
      '--monitor',
      'with Prometheus and Alertmanager: show IcnNodeDown firing for the crashed node and resolving once it is back',
    )
    .option('--json', "print what it measured as JSON on stdout (the tour's lines go to stderr)")
    .action((opts: { nodes: number; dir?: string; keep?: boolean; monitor?: boolean; json?: boolean }) =>
      run(async () => {
        if (opts.nodes < 2 || opts.nodes > MAX_DEVNET_NODES)
          throw new CliError(`--nodes must be 2 to ${MAX_DEVNET_NODES} for the demo`, EXIT.usage)
        const { runDemo } = await import('../../devnet/index.js')
        const summary = await runDemo({
          nodes: opts.nodes,
          dir: opts.dir,
          keep: opts.keep,
          monitor: opts.monitor,
          out: (line) => (opts.json ? process.stderr : process.stdout).write(`${line}\n`),
          onProgress: progress,
        })
        if (opts.json) output(opts, summary)
      }),
    )

  devnet
    .command('status')
    .description(
      'Each node of the devnet: process, readiness, connected peers (exit 0 even if some are down)',
    )
    .option('--dir <dir>', DIR_HELP)
    .option('--json', 'print JSON: { dir, federation, nodes: [...] }')
    .action((opts: DirOpts) =>
      run(async () => {
        const status = await (await open(opts)).status()
        output(opts, status, () => statusTable(status))
      }),
    )

  devnet
    .command('kill')
    .description('SIGKILL one node, as a crash would')
    .argument('<name>', 'node name, e.g. node3')
    .option('--dir <dir>', DIR_HELP)
    .option('--json', 'print JSON')
    .action((name: string, opts: DirOpts) =>
      run(async () => {
        const r = await (await open(opts)).kill(name)
        output(opts, r, `${r.name} killed (pid ${r.pid})`)
      }),
    )

  devnet
    .command('restart')
    .description(
      'Stop one node if it runs (SIGTERM, SIGKILL after 10 s), start it again, wait until connected',
    )
    .argument('<name>', 'node name, e.g. node3')
    .option('--dir <dir>', DIR_HELP)
    .option(
      '--timeout <seconds>',
      'how long to wait for ready and connected',
      seconds,
      DEFAULT_DEVNET_TIMEOUT_S,
    )
    .option('--json', 'print the node status as JSON')
    .action((name: string, opts: DirOpts & { timeout: number }) =>
      run(async () => {
        const node = await (await open(opts)).restart(name, { timeoutMs: opts.timeout * 1000 })
        output(opts, node, () => table([node]))
      }),
    )

  devnet
    .command('down')
    .description('Stop every node (SIGTERM, SIGKILL after 10 s) and check none is left')
    .option('--dir <dir>', DIR_HELP)
    .option('--clean', 'also remove the devnet folder (and, on PostgreSQL, drop the node databases)')
    .option('--json', 'print JSON')
    .action((opts: DirOpts & { clean?: boolean }) =>
      run(async () => {
        const net = await open(opts)
        const r = await net.down({ clean: opts.clean })
        output(
          opts,
          { dir: net.dir, ...r },
          `stopped ${r.stopped.length} node${r.stopped.length === 1 ? '' : 's'}` +
            (r.monitorStopped.length > 0
              ? ` and ${r.monitorStopped.map((m) => m.service).join(' and ')}`
              : '') +
            (r.cleaned ? `; removed the devnet in ${net.dir}` : ''),
        )
      }),
    )
}

function short(text: string, head: number): string {
  return text.length > head + 8 ? `${text.slice(0, head)}…${text.slice(-6)}` : text
}

function table(nodes: DevnetNodeStatus[]): string {
  const rows = [
    ['NAME', 'API', 'API KEY', 'DID', 'PEER ID', 'PID', 'RUNNING', 'READY', 'PEERS', 'MEMBER'],
    ...nodes.map((n) => [
      n.name,
      n.apiUrl,
      n.apiKey,
      short(n.did, 12),
      short(n.peerId, 8),
      n.pid === null ? '-' : String(n.pid),
      n.running ? 'yes' : 'no',
      n.ready ? 'yes' : 'no',
      n.running ? `${n.connectedPeers}/${n.expectedPeers}` : '-',
      n.member ? `${short(n.member.did, 12)} ${n.member.dir}` : '-',
    ]),
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

function statusTable(s: DevnetStatus): string {
  const up = s.nodes.filter((n) => n.running).length
  return (
    `${table(s.nodes)}\n` +
    `devnet ${s.dir}: ${up}/${s.nodes.length} nodes running, federation ${s.federation}\n` +
    `Use a node: export ICN_API=<API> ICN_API_KEY=<API KEY>, or --data-dir ${quote(s.dir)}/<NAME>` +
    (s.nodes.some((n) => n.member)
      ? `\nAct as the member homed at a node: --member <MEMBER folder> (it opens without a passphrase prompt)`
      : '') +
    monitorLines(s)
  )
}

function monitorLines(s: DevnetStatus): string {
  const line = (what: string, m: DevnetStatus['prometheus']): string =>
    m ? `\n${what} ${m.url} (${m.running ? (m.ready ? 'ready' : 'not ready') : 'not running'})` : ''
  return line('Prometheus:  ', s.prometheus) + line('Alertmanager:', s.alertmanager)
}

function quote(path: string): string {
  return /^[\w./-]+$/.test(path) ? path : `'${path.replace(/'/g, "'\\''")}'`
}
