import type { FastifyInstance } from 'fastify'
import { createApiServer } from '../api/index.js'
import {
  type BlockStore,
  ChainWriter,
  type CID,
  checkAborted,
  PostgresBlockStore,
  SqliteBlockStore,
  StoreHealthMonitor,
} from '../dag/index.js'
import { IcnError, type Signer, WorkerVerifier } from '../identity/index.js'
import { createLogger, createMetrics, type Logger, type Metrics, Readiness } from '../observability/index.js'
import { VERSION } from '../version.js'
import { dataPaths } from './datadir.js'
import { checkOptions, type NodeOptions, parseListen, redactUrl } from './options.js'

/** The HTTP API could not listen on its address (in use, not permitted, no such interface). */
export class ApiListenError extends IcnError {
  override readonly name = 'ApiListenError'
  constructor(message: string) {
    super('API_LISTEN_FAILED', message)
  }
}

export type NodeStatus = 'created' | 'starting' | 'running' | 'stopping' | 'stopped'

/** What the node is built from besides its settings: its identity and secrets, and optionally shared logger/metrics. */
export interface NodeModules {
  signer: Signer
  apiKey: string
  logger?: Logger
  metrics?: Metrics
}

/** Name of the node's own chain under its DID. */
export const NODE_CHAIN = 'node'

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
  /** Signature checks of incoming blocks run on worker threads, beside decoding and storing. */
  readonly verifier = new WorkerVerifier()
  readonly startedAt = new Date()
  private api?: FastifyInstance
  private apiAddress?: string
  private readonly controller = new AbortController()

  private constructor(
    readonly options: NodeOptions,
    private readonly modules: NodeModules,
  ) {
    this.logger = modules.logger ?? createLogger({ level: options.logLevel })
    this.metrics = modules.metrics ?? createMetrics()
    const storeLogger = this.logger.child({ module: 'dag' })
    const storeComponents = { logger: storeLogger, metrics: this.metrics, verifier: this.verifier }
    this.store =
      options.store === 'postgres'
        ? new PostgresBlockStore({ url: options.pgUrl! }, storeComponents)
        : new SqliteBlockStore(
            { path: dataPaths(options.dataDir).sqlite, synchronous: options.sqliteSynchronous },
            storeComponents,
          )
    this.health = new StoreHealthMonitor(
      {},
      { store: this.store, logger: storeLogger, metrics: this.metrics },
    )
    this.writer = new ChainWriter(
      { name: NODE_CHAIN },
      { store: this.store, signer: modules.signer, logger: storeLogger },
    )
    this.readiness.register('store', () => this.health.status())
    this.readiness.register('api', () => ({ ready: this.status === 'running', detail: this.status }))
  }

  /** Check the options and build the node; nothing is opened until `start()`. */
  static async create(options: NodeOptions, modules: NodeModules): Promise<IcnNode> {
    checkOptions(options)
    return new IcnNode(options, modules)
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
      await this.store.open({ signal: this.signal })
      // Report running only once the store has answered a health check, so /ready is true from the start.
      await this.health.check()
      this.health.start()
      await this.writer.currentHead({ signal: this.signal })
      this.api = await createApiServer({
        did: this.did,
        store: this.store,
        writer: this.writer,
        readiness: this.readiness,
        metrics: this.metrics,
        logger: this.logger.child({ module: 'api' }),
        apiKey: this.modules.apiKey,
        startedAt: this.startedAt,
        gcRoots: () => this.gcRoots(),
        onStoreError: (err) => this.health.reportFailure(err),
      })
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
      log.info({ api: this.apiAddress, did: this.did }, 'node running')
    } catch (err) {
      this.status = 'stopping'
      await this.teardown()
      this.status = 'stopped'
      throw err
    }
  }

  /** Stop in reverse order: API (waiting for in-flight requests), health checks, store. Idempotent. */
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
    this.health.stop()
    await this.store.close().catch((err: unknown) => this.logger.warn({ err }, 'store close failed'))
    await this.verifier.close()
  }

  /** GC keeps the node's own chain whole. */
  private async gcRoots(): Promise<CID[]> {
    const head = await this.writer.currentHead()
    return head ? [head.cid] : []
  }
}
