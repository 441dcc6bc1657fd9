import type { FastifyInstance } from 'fastify'
import { type ApiFederation, createApiServer } from '../api/index.js'
// The modules' API handlers directly: their index.ts files are also loaded where fastify is not wanted.
import { dagHandlers } from '../dag/api.js'
import {
  type BlockStore,
  ChainWriter,
  type CID,
  checkAborted,
  SqliteBlockStore,
  StoreHealthMonitor,
} from '../dag/index.js'
import { economicsHandlers } from '../economics/api.js'
import {
  LEDGER_CHAIN,
  Ledger,
  type LedgerFoldListener,
  ledgerMetrics,
  ledgerSetup,
  VerifiedRecords,
} from '../economics/index.js'
import { type Federation, federationSummary, readGenesisFile } from '../federation/index.js'
import { CoalescingVerifier, IcnError, type Signer, WorkerVerifier } from '../identity/index.js'
import { networkHandlers } from '../network/api.js'
import { type Clock, type IcnTransport, Network, readPskFile, systemClock } from '../network/index.js'
import {
  createLogger,
  createMetrics,
  EventBus,
  type Logger,
  type Metrics,
  Readiness,
} from '../observability/index.js'
import { ProjectionRunner } from '../state/index.js'
import { VERSION } from '../version.js'
import { nodeHandlers } from './api.js'
import { dataPaths } from './datadir.js'
import { checkOptions, type NodeOptions, parseListen, redactUrl } from './options.js'
import { nodeProjections } from './projections.js'
import { webHandlers } from './web.js'

/** The HTTP API could not listen on its address (in use, not permitted, no such interface). */
export class ApiListenError extends IcnError {
  override readonly name = 'ApiListenError'
  constructor(message: string) {
    super('API_LISTEN_FAILED', message)
  }
}

/** The API's view of the federation and the network. */
function apiFederation(f: Federation, network: Network): ApiFederation {
  return {
    ...federationSummary(f),
    peerId: network.peerId.toString(),
    listenAddrs: () => network.listenAddrs,
    peers: () => network.peers(),
  }
}

/** The node's DID is not one of the nodes the federation's genesis allows. */
export class NotAFederationNodeError extends IcnError {
  override readonly name = 'NotAFederationNodeError'
  constructor(did: string, federation: string) {
    super(
      'NOT_A_FEDERATION_NODE',
      `this node (${did}) is not one of the nodes of federation ${federation}; its genesis must list the node's DID`,
      { details: { did, federation } },
    )
  }
}

export type NodeStatus = 'created' | 'starting' | 'running' | 'stopping' | 'stopped'

/** What the node is built from besides its settings: its identity and secrets, and optionally shared logger/metrics. */
export interface NodeModules {
  signer: Signer
  apiKey: string
  logger?: Logger
  metrics?: Metrics
  /** Time of the network's timers, the stores' timestamps and the chain writer's blocks (default: the system's). */
  clock?: Clock
  /** Uniform in [0, 1): re-dial jitter, anti-entropy peer choice (default Math.random). */
  random?: () => number
  /** libp2p transports (default TCP); the in-process test harness passes `memory()` of `@libp2p/memory`. */
  transports?: IcnTransport[]
  /** The genesis of `options.genesis`, when the caller has read it already (else `start` reads the file). */
  federation?: Federation
}

/** The RPC protocol a node forwards a member's record on, to the member's home node. */
export const LEDGER_FORWARD_PROTOCOL = 'ledger/forward/1'

/** Name of the node's own chain under its DID. */
export const NODE_CHAIN = 'node'

/** Longest a gossip message's forwarding waits for this node's projections to fold its blocks. */
export const RELAY_FOLD_WAIT_MS = 500

/**
 * The composition root: builds every module in order (store, health, chain writer, API), starts them in that
 * order and stops them in reverse, behind a status. One process, one node.
 */
export class IcnNode {
  status: NodeStatus = 'created'
  readonly logger: Logger
  readonly metrics: Metrics
  readonly readiness = new Readiness()
  readonly store: BlockStore
  readonly health: StoreHealthMonitor
  readonly writer: ChainWriter
  /** Derived state: the projection runner folding blocks into the modules' tables (see nodeProjections). */
  readonly state: ProjectionRunner
  /** The mana ledger, once the node joined a federation (its accounts come from the genesis). */
  ledger?: Ledger
  /** Signature checks of incoming blocks run on worker threads, beside decoding and storing. */
  readonly verifier = new WorkerVerifier()
  /**
   * Member records this process verified (VerifiedRecords): filled by the ledger's API checks, consulted by the
   * ledger's fold, so the home node verifies each member record once, not twice. Never shared with other nodes.
   */
  readonly verifiedRecords = new VerifiedRecords()
  /** Wall-clock start of this process's node (for uptime; not domain time, so not from the injected clock). */
  readonly startedAt = new Date()
  /** The node's clock (NodeModules.clock, else the system's). */
  readonly clock: Clock
  /** What the node sees (blocks stored, evidence, peers), for /v1/events. */
  readonly events = new EventBus()
  /** Set once started with a genesis. */
  federation?: Federation
  network?: Network
  private api?: FastifyInstance
  private apiAddress?: string
  private readonly controller = new AbortController()

  private constructor(
    readonly options: NodeOptions,
    private readonly modules: NodeModules,
    postgres?: typeof import('../dag/postgres.js').PostgresBlockStore,
  ) {
    this.logger = modules.logger ?? createLogger({ level: options.logLevel })
    this.metrics = modules.metrics ?? createMetrics()
    this.clock = modules.clock ?? systemClock
    const storeLogger = this.logger.child({ module: 'dag' })
    const storeComponents = {
      logger: storeLogger,
      metrics: this.metrics,
      verifier: this.verifier,
      clock: this.clock,
    }
    if (options.store === 'postgres' && !postgres)
      throw new Error('IcnNode: the PostgreSQL store is not loaded')
    this.store =
      options.store === 'postgres' && postgres
        ? new postgres(
            // The lock makes the database this identity's alone: a second node with this DID fails at open.
            { url: options.pgUrl!, timeoutMs: options.storeTimeoutMs, lockKey: modules.signer.did },
            storeComponents,
          )
        : new SqliteBlockStore(
            { path: dataPaths(options.dataDir).sqlite, synchronous: options.sqliteSynchronous },
            storeComponents,
          )
    this.health = new StoreHealthMonitor(
      {},
      { store: this.store, logger: storeLogger, metrics: this.metrics, clock: this.clock },
    )
    this.writer = new ChainWriter(
      { name: NODE_CHAIN },
      { store: this.store, signer: modules.signer, logger: storeLogger, clock: this.clock },
    )
    this.state = new ProjectionRunner(
      // On PostgreSQL other nodes may share the database: look for the blocks they stored now and then.
      { refreshMs: options.store === 'postgres' ? 5_000 : 0 },
      {
        store: this.store,
        logger: this.logger.child({ module: 'state' }),
        metrics: this.metrics,
        clock: this.clock,
        did: modules.signer.did,
      },
    )
    this.readiness.register('store', () => this.health.status())
    this.readiness.register('projections', () => this.state.status())
    this.readiness.register('api', () => ({ ready: this.status === 'running', detail: this.status }))
    this.store.onCommit((e) => {
      if (!this.events.listening) return
      const at = performance.timeOrigin + performance.now()
      for (const b of e.blocks)
        this.events.publish({
          type: b.status === 'stored' ? 'block' : 'evidence',
          cid: b.cid.toString(),
          kind: b.kind,
          ...(b.chain !== undefined ? { chain: b.chain, seq: b.seq, author: b.author } : {}),
          origin: e.source,
          ...(e.peer ? { peer: e.peer } : {}),
          at,
        })
    })
  }

  /** Check the options and build the node; nothing is opened until `start()`. */
  static async create(options: NodeOptions, modules: NodeModules): Promise<IcnNode> {
    checkOptions(options)
    // The PostgreSQL store (and the pg driver) only when it is used: a node on SQLite starts without loading it.
    const postgres =
      options.store === 'postgres' ? (await import('../dag/postgres.js')).PostgresBlockStore : undefined
    return new IcnNode(options, modules, postgres)
  }

  get did(): string {
    return this.modules.signer.did
  }

  /** Root signal, aborted when the node stops. */
  get signal(): AbortSignal {
    return this.controller.signal
  }

  /** Base URL of the HTTP API once started. */
  get apiUrl(): string {
    if (!this.apiAddress) throw new Error('node API is not listening')
    return this.apiAddress
  }

  /** Open the store (throws StoreOpenError: no fallback), start health checks, then serve the API. Idempotent. */
  async start(): Promise<void> {
    if (this.status !== 'created') return
    this.status = 'starting'
    const log = this.logger
    try {
      log.info(
        {
          did: this.did,
          version: VERSION,
          store: this.store.backend,
          dataDir: this.options.dataDir,
          ...(this.options.pgUrl ? { pgUrl: redactUrl(this.options.pgUrl) } : {}),
        },
        'node starting',
      )
      // The genesis is read and checked before anything is opened: a wrong file fails fast.
      const federation =
        this.modules.federation ??
        (this.options.genesis ? await readGenesisFile(this.options.genesis) : undefined)
      if (federation && !federation.nodes.includes(this.did))
        throw new NotAFederationNodeError(this.did, federation.id)
      const psk = this.options.pskFile ? await readPskFile(this.options.pskFile) : undefined
      await this.store.open({ signal: this.signal })
      // Report running only once the store has answered a health check, so /ready is true from the start.
      await this.health.check()
      this.health.start()
      await this.writer.currentHead({ signal: this.signal })
      // Derived state catches up on what the store holds before the network brings more.
      const projections = nodeProjections({
        did: this.did,
        federation,
        onLedgerFolded: this.ledgerFolded,
        onLedgerBlockRejected: (code) => ledgerMetrics(this.metrics.registry).blocksRejected.inc({ code }),
        verifiedRecords: this.verifiedRecords,
        onLedgerSignatureChecks: (counts) => {
          const m = ledgerMetrics(this.metrics.registry).signatureChecks
          for (const [result, n] of Object.entries(counts)) if (n > 0) m.inc({ where: 'fold', result }, n)
        },
      })
      for (const p of projections) this.state.register(p)
      if (federation) this.ledger = this.buildLedger(federation)
      await this.state.start()
      checkAborted(this.signal)
      if (federation) await this.joinFederation(federation, psk)
      const apiView =
        this.federation && this.network ? apiFederation(this.federation, this.network) : undefined
      this.api = await createApiServer(
        {
          metrics: this.metrics,
          logger: this.logger.child({ module: 'api' }),
          apiKey: this.modules.apiKey,
          onStoreError: (err) => this.health.reportFailure(err),
        },
        // Every module's routes' handlers, each over the components it uses (the route table is api/routes.ts).
        [
          nodeHandlers({
            did: this.did,
            store: this.store,
            writer: this.writer,
            readiness: this.readiness,
            metrics: this.metrics,
            startedAt: this.startedAt,
            events: this.events,
            federation: apiView,
          }),
          networkHandlers({ federation: apiView }),
          economicsHandlers({ ledger: () => this.ledger }),
          dagHandlers({
            store: this.store,
            writer: this.writer,
            metrics: this.metrics,
            gcRoots: () => this.gcRoots(),
          }),
          webHandlers(),
        ],
      )
      checkAborted(this.signal) // stop() came while the server was being built
      const { host, port } = parseListen(this.options.apiListen)
      await this.api.listen({ host, port }).catch((err: NodeJS.ErrnoException) => {
        const why =
          err.code === 'EADDRINUSE' ? 'is in use (another icn node?)' : `cannot be used (${err.message})`
        throw new ApiListenError(
          `API address ${this.options.apiListen} ${why}; choose another with --api-listen HOST:PORT`,
        )
      })
      checkAborted(this.signal)
      const addr = this.api.server.address()
      const bound = typeof addr === 'object' && addr ? addr.port : port
      this.apiAddress = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`
      this.status = 'running'
      log.info(
        {
          api: this.apiAddress,
          did: this.did,
          // How long the process took to get here, and whether bin/icn's code cache spared the compiling.
          uptimeMs: Math.round(process.uptime() * 1000),
          codeCache: (
            (globalThis as Record<symbol, unknown>)[Symbol.for('icn.codeCache')] as
              | { state?: string }
              | undefined
          )?.state,
        },
        'node running',
      )
    } catch (err) {
      this.status = 'stopping'
      await this.teardown()
      this.status = 'stopped'
      throw err
    }
  }

  /** Stop in reverse order: API (waiting for in-flight requests), network, projections, health checks, store. Idempotent. */
  async stop(): Promise<void> {
    if (this.status === 'stopped' || this.status === 'stopping') return
    if (this.status === 'created') {
      this.status = 'stopped'
      return
    }
    this.status = 'stopping'
    this.logger.info('node stopping')
    await this.teardown()
    this.status = 'stopped'
    this.logger.info('node stopped')
  }

  private async teardown(): Promise<void> {
    this.controller.abort()
    if (this.api) {
      const api = this.api
      this.api = undefined
      await Promise.race([
        api.close(),
        new Promise((resolve) => setTimeout(resolve, this.options.shutdownTimeoutMs).unref()),
      ]).catch((err: unknown) => this.logger.warn({ err }, 'API close failed'))
    }
    if (this.network) await this.network.stop()
    await this.state.stop()
    this.health.stop()
    await this.store.close().catch((err: unknown) => this.logger.warn({ err }, 'store close failed'))
    await this.verifier.close()
  }

  /** Store and pin the genesis, then start the network (libp2p, gossip, exchange, anti-entropy). */
  private async joinFederation(federation: Federation, psk?: Uint8Array): Promise<void> {
    await this.store.put(federation.genesis, { source: 'local', signal: this.signal })
    await this.store.pin(federation.genesis.cid, { signal: this.signal })
    const network = new Network(
      { listen: this.options.p2pListen, bootstrap: this.options.bootstrap, psk },
      {
        signer: this.modules.signer,
        store: this.store,
        federation,
        logger: this.logger.child({ module: 'network' }),
        metrics: this.metrics,
        clock: this.clock,
        random: this.modules.random,
        transports: this.modules.transports,
        settled: (cids) => this.state.settled(cids, RELAY_FOLD_WAIT_MS),
      },
    )
    this.network = network
    const ledger = this.ledger
    // A member record sent to another node comes here if this is the member's home (see Ledger.transferJson).
    if (ledger) network.handle(LEDGER_FORWARD_PROTOCOL, (message) => ledger.handleForwarded(message))
    network.on('peer:connected', (p) =>
      this.events.publish({ type: 'peer:connected', peerId: p.peerId, did: p.did, at: this.clock.now() }),
    )
    network.on('peer:disconnected', (p) =>
      this.events.publish({
        type: 'peer:disconnected',
        peerId: p.peerId,
        did: p.did,
        at: this.clock.now(),
      }),
    )
    // Ready while listening: a node cut off from its peers still serves reads and takes writes (they reach the
    // others when it reconnects); the detail says how connected it is.
    this.readiness.register('network', async () => {
      const listening = network.listenAddrs.length > 0
      const peers = await network.peers()
      const connected = peers.filter((p) => p.connected).length
      return {
        ready: listening,
        detail: `${listening ? 'listening' : 'not listening'}; ${connected}/${peers.length} federation peers connected`,
      }
    })
    await network.start()
    this.federation = federation
    checkAborted(this.signal)
  }

  /** The ledger: this node writes the accounts homed here on its chain `<DID>/ledger` and reads every account. */
  private buildLedger(federation: Federation): Ledger {
    const log = this.logger.child({ module: 'economics' })
    return new Ledger({
      setup: ledgerSetup(federation),
      did: this.did,
      writer: new ChainWriter(
        { name: LEDGER_CHAIN },
        { store: this.store, signer: this.modules.signer, logger: log, clock: this.clock },
      ),
      state: this.state,
      sql: this.store.sql(),
      verifier: new CoalescingVerifier(this.verifier),
      verified: this.verifiedRecords,
      metrics: ledgerMetrics(this.metrics.registry),
      logger: log,
      clock: this.clock,
      forward: async (home, record) => {
        if (!this.network) throw new Error('no network')
        return this.network.request(home, LEDGER_FORWARD_PROTOCOL, record, { timeoutMs: 15_000 })
      },
    })
  }

  /** Each folded ledger op: a metric and a `/v1/events` event. */
  private readonly ledgerFolded: LedgerFoldListener = (e) => {
    const m = ledgerMetrics(this.metrics.registry)
    const at = performance.timeOrigin + performance.now()
    const counts = new Map<string, { op: string; outcome: string; n: number }>()
    for (const { op, code } of e.ops) {
      const outcome = code ?? 'applied'
      const key = `${op.op} ${outcome}`
      const c = counts.get(key)
      if (c) c.n++
      else counts.set(key, { op: op.op, outcome, n: 1 })
    }
    for (const c of counts.values()) m.folded.inc({ op: c.op, outcome: c.outcome }, c.n)
    // The events are built only for someone to read them (/v1/events streams, tests).
    if (!this.events.listening) return
    for (const { idx, op, code } of e.ops) {
      const outcome = code ?? 'applied'
      const base = { cid: e.cid, chain: e.chain, seq: e.seq, index: idx, outcome, ts: e.ts, at }
      if (op.op === 'transfer')
        this.events.publish({
          type: 'ledger:transfer',
          ...base,
          from: op.record.member,
          to: op.record.to,
          amount: op.record.amount,
        })
      else if (op.op === 'hold')
        this.events.publish({
          type: 'ledger:hold',
          ...base,
          from: op.record.member,
          amount: op.record.amount,
        })
      else if (op.op === 'release') this.events.publish({ type: 'ledger:release', ...base, hold: op.hold })
      else
        this.events.publish({ type: 'ledger:settle', ...base, hold: op.hold, to: op.to, amount: op.amount })
    }
  }

  /** No extra roots: GC keeps every chain head itself (own and replicated), the pins (genesis) and evidence. */
  private async gcRoots(): Promise<CID[]> {
    return []
  }
}
