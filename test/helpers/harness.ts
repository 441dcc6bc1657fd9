/**
 * Test fixture: N `IcnNode`s of one federation in this process, over libp2p's in-memory transport
 * (`@libp2p/memory`), each with its own SQLite store in a temp folder (or, with `store: 'postgres'`, its own
 * database on the test PostgreSQL server) and its real HTTP API on 127.0.0.1:0, all
 * on one shared ManualClock (network timers, store timestamps, block times). Helpers wait until the mesh is
 * connected or a block is on every node, stop and restart a node (same identity, same store), and partition
 * (stop) and heal (restart and reconnect) a set of nodes. `close()` stops everything and removes the folder.
 *
 * The clock moves only when a test (or a waiting helper, which advances it a step at a time while it waits)
 * moves it: re-dials, pings and anti-entropy rounds happen when time passes, never on their own.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { memory } from '@libp2p/memory'
import { ApiClient } from '../../src/api/index.js'
import { CID } from '../../src/dag/index.js'
import {
  createGenesis,
  type Federation,
  type FederationParameters,
  writeGenesisFile,
} from '../../src/federation/index.js'
import { Signer } from '../../src/identity/index.js'
import { type Network, peerIdFromDid } from '../../src/network/index.js'
import { defaultOptions, IcnNode } from '../../src/node/index.js'
import { createLogger } from '../../src/observability/index.js'
import { ManualClock } from './manual-clock.js'
import { createTestDatabase, type TestDatabase } from './pg.js'

/** A start time for the shared clock: a real date (block times are checked against it later). */
export const HARNESS_EPOCH = Date.UTC(2026, 0, 1)

export interface HarnessNode {
  readonly index: number
  readonly name: string
  readonly signer: Signer
  readonly did: string
  readonly peerId: string
  readonly dataDir: string
  readonly apiKey: string
  /** The node's in-memory p2p address, with its peer id. */
  readonly addr: string
  /** The running IcnNode (the last one started for this slot); undefined while stopped. */
  node?: IcnNode
}

export interface HarnessOptions {
  nodes: number
  parameters?: Partial<FederationParameters>
  /** The shared clock; default a ManualClock at HARNESS_EPOCH. */
  clock?: ManualClock
  /** The nodes' store backend (default sqlite); postgres gives each node a database of its own, dropped at close. */
  store?: 'sqlite' | 'postgres'
  /** More node keys for the genesis, which the test holds itself (e.g. a raw libp2p host playing a bad node). */
  extra?: Signer[]
  /**
   * Founding members and where each is homed: `home` indexes the harness nodes followed by `extra` (default:
   * node 0's own DID the only member, homed at itself).
   */
  members?: { signer: Signer; home: number }[]
  /** The nodes node i is bootstrapped to (indexes); default every other node. */
  bootstrap?: (index: number) => number[]
  /** Called with each node after it started (register RPC handlers, listen to events). */
  onStart?: (node: IcnNode, index: number) => void | Promise<void>
}

export interface Harness {
  readonly clock: ManualClock
  readonly federation: Federation
  readonly genesisPath: string
  readonly nodes: HarnessNode[]
  /** The running node of slot i (throws if it is stopped). */
  node(i: number): IcnNode
  network(i: number): Network
  /** A client of node i's API, holding its API key. */
  client(i: number): ApiClient
  /** Indexes of the running nodes. */
  running(): number[]
  /** Wait until every running node is connected to every other running node (advancing the clock meanwhile). */
  waitConnected(options?: { timeoutMs?: number }): Promise<void>
  /** Wait until the block is stored on every running node (or on `on`), advancing the clock meanwhile. */
  waitForBlock(cid: CID | string, options?: { on?: number[]; timeoutMs?: number }): Promise<void>
  /** Stop node i (its store and identity stay). */
  stop(i: number): Promise<void>
  /** Start node i again (a new IcnNode on the same data folder and identity). */
  restart(i: number): Promise<IcnNode>
  /** Cut these nodes off: they stop, the others see them go. */
  partition(...indexes: number[]): Promise<void>
  /** Bring them back and wait until the mesh is whole again. */
  heal(...indexes: number[]): Promise<void>
  close(): Promise<void>
}

let harnesses = 0

/**
 * Poll `check` until it holds, advancing `clock` by `stepMs` between polls (so re-dials and anti-entropy
 * rounds due on the manual clock happen), or fail after `timeoutMs` of real time.
 */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  opts: { clock?: ManualClock; stepMs?: number; timeoutMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000)
  let last: unknown
  for (;;) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    opts.clock?.advance(opts.stepMs ?? 250)
    await new Promise((r) => setTimeout(r, 10))
  }
}

export async function startHarness(opts: HarnessOptions): Promise<Harness> {
  const clock = opts.clock ?? new ManualClock(HARNESS_EPOCH)
  const dir = await mkdtemp(join(tmpdir(), 'icn-harness-'))
  const tag = `${process.pid}-${++harnesses}`
  const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
  const signers = Array.from({ length: opts.nodes }, () => Signer.generate())
  const nodeKeys = [...signers, ...(opts.extra ?? [])]
  const homeOf = (m: { signer: Signer; home: number }): string => {
    const home = nodeKeys[m.home]
    if (!home) throw new Error(`member ${m.signer.did}: no node ${m.home} to be homed at`)
    return home.did
  }
  const federation = createGenesis(signers[0]!, {
    name: 'harness',
    members: opts.members ? opts.members.map((m) => m.signer.did) : [signers[0]!.did],
    ...(opts.members
      ? { homes: Object.fromEntries(opts.members.map((m) => [m.signer.did, homeOf(m)])) }
      : {}),
    nodes: nodeKeys.map((s) => s.did),
    parameters: { syncIntervalMs: 1_000, ...opts.parameters },
    ts: clock.now(),
  })
  const genesisPath = join(dir, 'genesis.car')
  await writeGenesisFile(genesisPath, federation)
  const nodes: HarnessNode[] = signers.map((signer, index) => {
    const peerId = peerIdFromDid(signer.did).toString()
    return {
      index,
      name: `node${index + 1}`,
      signer,
      did: signer.did,
      peerId,
      dataDir: join(dir, `node${index + 1}`),
      apiKey: `harness-key-${index + 1}`,
      addr: `/memory/icn-${tag}-${index + 1}/p2p/${peerId}`,
    }
  })

  const databases: TestDatabase[] = []
  if (opts.store === 'postgres')
    for (let i = 0; i < opts.nodes; i++) databases.push(await createTestDatabase())

  const launch = async (i: number): Promise<IcnNode> => {
    const n = nodes[i]!
    const node = await IcnNode.create(
      {
        ...defaultOptions,
        ...(opts.store === 'postgres' ? { store: 'postgres' as const, pgUrl: databases[i]!.url } : {}),
        dataDir: n.dataDir,
        apiListen: '127.0.0.1:0',
        genesis: genesisPath,
        p2pListen: [`/memory/icn-${tag}-${i + 1}`],
        bootstrap: (opts.bootstrap
          ? opts.bootstrap(i).map((j) => nodes[j]!)
          : nodes.filter((o) => o !== n)
        ).map((o) => o.addr),
        logLevel: 'silent',
        shutdownTimeoutMs: 2_000,
      },
      {
        signer: n.signer,
        apiKey: n.apiKey,
        logger: logger.child({ node: n.name }),
        clock,
        random: seeded(i + 1),
        transports: [memory()],
      },
    )
    await node.start()
    n.node = node
    await opts.onStart?.(node, i)
    return node
  }

  const running = (): number[] => nodes.filter((n) => n.node).map((n) => n.index)
  const node = (i: number): IcnNode => {
    const n = nodes[i]?.node
    if (!n) throw new Error(`harness node ${i} is not running`)
    return n
  }
  const network = (i: number): Network => {
    const net = node(i).network
    if (!net) throw new Error(`harness node ${i} has no network`)
    return net
  }
  const connectedEverywhere = async (): Promise<boolean> => {
    const up = running()
    for (const i of up) {
      const peers = await network(i).peers()
      const want = new Set(up.filter((j) => j !== i).map((j) => nodes[j]!.peerId))
      for (const p of peers) if (p.connected) want.delete(p.peerId)
      if (want.size > 0) return false
    }
    return true
  }
  const waitConnected = (o: { timeoutMs?: number } = {}): Promise<void> =>
    until('the mesh to connect', connectedEverywhere, { clock, timeoutMs: o.timeoutMs })
  const stop = async (i: number): Promise<void> => {
    const n = nodes[i]!
    const running = n.node
    n.node = undefined
    await running?.stop()
  }

  const started: number[] = []
  try {
    // Started in order; a node dials those already up, and the others dial it as they come.
    for (let i = 0; i < opts.nodes; i++) {
      await launch(i)
      started.push(i)
    }
  } catch (err) {
    for (const i of started) await stop(i).catch(() => {})
    for (const d of databases) await d.drop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
    throw err
  }

  return {
    clock,
    federation,
    genesisPath,
    nodes,
    node,
    network,
    client: (i) => new ApiClient({ baseUrl: node(i).apiUrl, apiKey: nodes[i]!.apiKey }),
    running,
    waitConnected,
    waitForBlock: (cid, o = {}) => {
      const id = typeof cid === 'string' ? CID.parse(cid) : cid
      return until(
        `block ${id} on every node`,
        async () => {
          for (const i of o.on ?? running()) if (!(await node(i).store.has(id))) return false
          return true
        },
        { clock, timeoutMs: o.timeoutMs },
      )
    },
    stop,
    restart: (i) => {
      if (nodes[i]?.node) throw new Error(`harness node ${i} is running`)
      return launch(i)
    },
    partition: async (...indexes) => {
      for (const i of indexes) await stop(i)
    },
    heal: async (...indexes) => {
      for (const i of indexes) await launch(i)
      await waitConnected()
    },
    close: async () => {
      for (const n of nodes) await stop(n.index).catch(() => {})
      for (const d of databases) await d.drop().catch(() => {})
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** A small seeded generator (mulberry32): each node's jitter is random-looking but the same run to run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}
