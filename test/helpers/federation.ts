/**
 * Test fixture: a federation of real `icn node start` processes on 127.0.0.1, each with its own data folder,
 * a genesis that lists them (and any extra node keys a test holds itself, e.g. to play a misbehaving member),
 * and helpers to write blocks, wait for them and read the nodes' APIs. Every process is a tracked child of
 * test/helpers/process.ts, so `killAll()` stops them.
 */
import { join } from 'node:path'
import {
  createGenesis,
  type Federation,
  type FederationParameters,
  writeGenesisFile,
} from '../../src/federation/index.js'
import { Signer } from '../../src/identity/index.js'
import { peerIdFromDid } from '../../src/network/index.js'
import { initDataDir as initInProcess, unlockIdentity } from '../../src/node/datadir.js'
import { freePort, type RunningNode, startNode, TEST_PASSPHRASE, tempDir } from './process.js'

export interface FedNode {
  name: string
  dataDir: string
  did: string
  peerId: string
  apiKey: string
  p2pPort: number
  /** The node's p2p multiaddr, with its peer id. */
  addr: string
  proc?: RunningNode
  /** API base URL of the running process. */
  api: string
}

export interface TestFederation {
  dir: string
  genesisPath: string
  federation: Federation
  nodes: FedNode[]
  /** Start (or restart) node i, bootstrapping to every other node. */
  start(i: number): Promise<FedNode>
  /** SIGKILL node i. */
  kill(i: number): Promise<void>
}

export async function makeFederation(opts: {
  nodes: number
  extra?: Signer[]
  parameters?: Partial<FederationParameters>
}): Promise<TestFederation> {
  const dir = await tempDir('icn-fed-')
  const nodes: FedNode[] = []
  for (let i = 0; i < opts.nodes; i++) {
    const dataDir = join(dir, `node${i + 1}`)
    const r = await initInProcess({ dataDir, store: 'sqlite', apiListen: '127.0.0.1:0' }, TEST_PASSPHRASE, {
      N: 1024,
    })
    const p2pPort = await freePort()
    const peerId = peerIdFromDid(r.did).toString()
    nodes.push({
      name: `node${i + 1}`,
      dataDir,
      did: r.did,
      peerId,
      apiKey: r.apiKey,
      p2pPort,
      addr: `/ip4/127.0.0.1/tcp/${p2pPort}/p2p/${peerId}`,
      api: '',
    })
  }
  const founder = await unlockIdentity(nodes[0]!.dataDir, TEST_PASSPHRASE)
  const dids = [...nodes.map((n) => n.did), ...(opts.extra ?? []).map((s) => s.did)]
  const federation = createGenesis(founder, {
    name: 'test',
    members: [founder.did],
    nodes: dids,
    parameters: { syncIntervalMs: 1_000, ...opts.parameters },
  })
  const genesisPath = join(dir, 'genesis.car')
  await writeGenesisFile(genesisPath, federation)

  const start = async (i: number): Promise<FedNode> => {
    const n = nodes[i]!
    const bootstrap = nodes.filter((o) => o !== n).flatMap((o) => ['--bootstrap', o.addr])
    n.proc = await startNode(
      [
        '--data-dir',
        n.dataDir,
        '--genesis',
        genesisPath,
        '--p2p-listen',
        `/ip4/127.0.0.1/tcp/${n.p2pPort}`,
        ...bootstrap,
      ],
      { timeoutMs: 30_000 },
    )
    n.api = n.proc.info.api
    return n
  }
  const kill = async (i: number): Promise<void> => {
    await nodes[i]!.proc?.stop('SIGKILL')
  }
  return { dir, genesisPath, federation, nodes, start, kill }
}

/** Poll `check` every 50 ms until it returns a value other than undefined/false, or fail after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

// biome-ignore lint/suspicious/noExplicitAny: tests read the replies field by field and assert on them
export async function getJson<T = any>(url: string): Promise<T> {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`)
  return (await res.json()) as T
}

/** POST a value to a node's chain; returns its CID. */
export async function putValue(node: FedNode, value: unknown): Promise<string> {
  const res = await fetch(`${node.api}/v1/dag/blocks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${node.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value }),
  })
  if (res.status !== 201) throw new Error(`put on ${node.name}: ${res.status} ${await res.text()}`)
  return ((await res.json()) as { cid: string }).cid
}

export async function hasBlock(node: FedNode, cid: string): Promise<boolean> {
  const res = await fetch(`${node.api}/v1/dag/blocks/${cid}`)
  await res.arrayBuffer()
  return res.status === 200
}

export async function connectedPeers(node: FedNode): Promise<number> {
  const { peers } = await getJson<{ peers: { connected: boolean }[] }>(`${node.api}/v1/peers`)
  return peers.filter((p) => p.connected).length
}

/** A metric's value from /metrics (0 when absent), e.g. metric(n, 'icn_gossip_rejected_total{reason="bad_cid"}'). */
export async function metric(node: FedNode, series: string): Promise<number> {
  const text = await (await fetch(`${node.api}/metrics`)).text()
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  return 0
}

export { Signer }
