import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

/** Every metric the node exports, created once here and handed to the modules that update them. */
export interface Metrics {
  readonly registry: Registry
  readonly httpRequests: Counter<'method' | 'route' | 'status'>
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>
  readonly blocksStored: Counter<'kind' | 'source'>
  readonly blocksRejected: Counter<'reason' | 'source'>
  readonly blocksDuplicate: Counter<'source'>
  readonly equivocations: Counter<'source'>
  readonly storeOpDuration: Histogram<'backend' | 'op'>
  readonly storeErrors: Counter<'backend' | 'op'>
  readonly storeUp: Gauge<'backend'>
  readonly gcRemoved: Counter<never>
  readonly carBlocks: Counter<'direction'>
}

/** Build the registry and all metrics. `collectProcess` adds Node's process metrics (CPU, memory, event loop). */
export function createMetrics(opts: { collectProcess?: boolean; prefix?: string } = {}): Metrics {
  const registry = new Registry()
  if (opts.collectProcess !== false) collectDefaultMetrics({ register: registry })
  const registers = [registry]
  return {
    registry,
    httpRequests: new Counter({
      name: 'icn_http_requests_total',
      help: 'HTTP requests served, by route template and status code',
      labelNames: ['method', 'route', 'status'] as const,
      registers,
    }),
    httpDuration: new Histogram({
      name: 'icn_http_request_duration_seconds',
      help: 'HTTP request latency, by route template and status code',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    blocksStored: new Counter({
      name: 'icn_dag_blocks_stored_total',
      help: 'Blocks accepted into the store, by kind (signed, raw) and source (local, import, http, ...)',
      labelNames: ['kind', 'source'] as const,
      registers,
    }),
    blocksRejected: new Counter({
      name: 'icn_dag_blocks_rejected_total',
      help: 'Blocks refused by validation, by error code and source',
      labelNames: ['reason', 'source'] as const,
      registers,
    }),
    blocksDuplicate: new Counter({
      name: 'icn_dag_blocks_duplicate_total',
      help: 'Blocks offered that the store already held',
      labelNames: ['source'] as const,
      registers,
    }),
    equivocations: new Counter({
      name: 'icn_dag_equivocations_total',
      help: 'Second blocks found for an already occupied chain position, kept as evidence',
      labelNames: ['source'] as const,
      registers,
    }),
    storeOpDuration: new Histogram({
      name: 'icn_store_operation_duration_seconds',
      help: 'Block store operation latency, by backend and operation',
      labelNames: ['backend', 'op'] as const,
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
      registers,
    }),
    storeErrors: new Counter({
      name: 'icn_store_errors_total',
      help: 'Block store operations that failed for a reason other than bad input',
      labelNames: ['backend', 'op'] as const,
      registers,
    }),
    storeUp: new Gauge({
      name: 'icn_store_up',
      help: '1 when the block store answered its last health check, 0 otherwise',
      labelNames: ['backend'] as const,
      registers,
    }),
    gcRemoved: new Counter({
      name: 'icn_dag_gc_removed_blocks_total',
      help: 'Blocks removed by garbage collection',
      registers,
    }),
    carBlocks: new Counter({
      name: 'icn_dag_car_blocks_total',
      help: 'Blocks written to (export) or read from (import) CAR files',
      labelNames: ['direction'] as const,
      registers,
    }),
  }
}

/** Time an async operation into a histogram; failures are observed too. */
export async function timed<T>(
  histogram: Histogram<'backend' | 'op'>,
  labels: { backend: string; op: string },
  fn: () => Promise<T>,
): Promise<T> {
  const end = histogram.startTimer(labels)
  try {
    return await fn()
  } finally {
    end()
  }
}
