/**
 * `icn dag reindex`: offline, on a data folder. Opens the node's store (STORE_LOCKED while the node runs), builds
 * the node's projections, brings them up to date, dumps every derived-state table, rebuilds them all from the
 * blocks, dumps again and compares table by table. Loaded only by that command.
 */
import { existsSync } from 'node:fs'
import { type BlockStore, DAG_CBOR, decodeSignedBlock, SqliteBlockStore } from '../dag/index.js'
import { PostgresBlockStore } from '../dag/postgres.js'
import { type Federation, GENESIS_TYPE, parseGenesis, readGenesisFile } from '../federation/index.js'
// Straight from the files, not node/index.ts: the node itself (libp2p, the API server) is not needed here.
import { dataPaths, NotInitializedError, readConfig, readDid } from '../node/datadir.js'
import type { StoreKind } from '../node/options.js'
import { nodeProjections } from '../node/projections.js'
import { dumpDifferences, ProjectionRunner } from '../state/index.js'
import { CliError, EXIT } from './common.js'

export interface ReindexOptions {
  dataDir: string
  store?: StoreKind
  pgUrl?: string
  /** The federation's genesis file, for projections that need it (e.g. the ledger's genesis accounts). */
  genesis?: string
  /** The projections to rebuild; default the node's own (`nodeProjections`). Tests pass fixtures. */
  projections?: typeof nodeProjections
}

export interface ReindexReport {
  store: StoreKind
  projections: string[]
  /** Blocks refolded. */
  blocks: number
  ms: number
  blocksPerSecond: number
  tables: number
  rows: number
  /** Every table came out as it was before the rebuild. */
  identical: boolean
  /** Tables whose rows differ (a bug: derived state must be a function of the blocks). */
  differing: string[]
}

export async function reindexDataDir(
  opts: ReindexOptions,
  onProgress?: (p: { blocks: number; chains: number }) => void,
): Promise<ReindexReport> {
  const cfg = await readConfig(opts.dataDir)
  const kind: StoreKind = opts.store ?? cfg?.store ?? 'sqlite'
  const did = await readDid(opts.dataDir)
  const federation = opts.genesis ? await readGenesisFile(opts.genesis) : undefined
  let store: BlockStore
  if (kind === 'postgres') {
    const url = opts.pgUrl ?? cfg?.pgUrl
    if (!url) throw new CliError('a postgres store needs --pg-url URL (or pgUrl in the config)', EXIT.usage)
    store = new PostgresBlockStore({ url, lockKey: did })
  } else {
    const path = dataPaths(opts.dataDir).sqlite
    if (!existsSync(path)) throw new NotInitializedError(opts.dataDir)
    store = new SqliteBlockStore({ path })
  }
  await store.open()
  const runner = new ProjectionRunner({}, { store, did })
  try {
    const fed = federation ?? (await pinnedGenesis(store, did))
    for (const p of (opts.projections ?? nodeProjections)({ did, federation: fed })) runner.register(p)
    await runner.start()
    // A store folded by projections this reindex does not build (the ledger, without --genesis) would come out
    // "identical" with nothing rebuilt: refuse, and say what is missing.
    const built = new Set(runner.projections)
    const missing = (await runner.reader().query('SELECT name FROM state_projections ORDER BY name'))
      .map((r) => String(r.name))
      .filter((name) => !built.has(name))
    if (missing.length > 0)
      throw new CliError(
        `this store holds derived state of ${missing.join(', ')}, which needs the federation: pass --genesis FILE (the genesis the node runs with)`,
        EXIT.usage,
        'GENESIS_REQUIRED',
      )
    const before = await runner.dump()
    const r = await runner.reindex({ onProgress })
    const after = await runner.dump()
    const differing = dumpDifferences(before, after)
    return {
      store: kind,
      projections: runner.projections,
      blocks: r.blocks,
      ms: Math.round(r.ms),
      blocksPerSecond: r.ms > 0 ? Math.round((r.blocks / r.ms) * 1000) : 0,
      tables: Object.keys(after).length,
      rows: Object.values(after).reduce((n, rows) => n + rows.length, 0),
      identical: differing.length === 0,
      differing,
    }
  } finally {
    await runner.stop()
    await store.close()
  }
}

/**
 * The federation this node joined, found in its own store: a node pins the genesis it was started with. So
 * `icn dag reindex` needs no --genesis for a node's data folder. Undefined if the node never joined one.
 */
async function pinnedGenesis(store: BlockStore, did: string): Promise<Federation | undefined> {
  const found: Federation[] = []
  for (const cid of await store.pins()) {
    if (cid.code !== DAG_CBOR) continue
    const bytes = await store.get(cid).catch(() => undefined)
    if (!bytes) continue
    let type: string
    try {
      type = decodeSignedBlock(bytes).type
    } catch {
      continue
    }
    if (type !== GENESIS_TYPE) continue
    const f = parseGenesis({ cid, bytes })
    if (f.nodes.includes(did)) found.push(f)
  }
  if (found.length > 1)
    throw new CliError(
      `this store holds the genesis of ${found.length} federations of this node (${found.map((f) => f.id).join(', ')}); choose one with --genesis FILE`,
      EXIT.usage,
    )
  return found[0]
}
