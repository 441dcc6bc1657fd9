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
  readonly blockSignatures: Counter<'check'>
  readonly storeOpDuration: Histogram<'backend' | 'op'>
  readonly storeErrors: Counter<'backend' | 'op'>
  readonly storeUp: Gauge<'backend'>
  readonly gcRemoved: Counter<never>
  readonly carBlocks: Counter<'direction'>
  readonly peersConnected: Gauge<never>
  readonly peerRtt: Gauge<'peer'>
  readonly redials: Counter<'outcome'>
  readonly gossipMessages: Counter<'direction'>
  readonly gossipBlocks: Counter<'direction'>
  readonly gossipRejected: Counter<'reason'>
  readonly gossipValidation: Histogram<'result'>
  readonly gossipFoldWaits: Counter<'outcome'>
  readonly exchangeDuration: Histogram<'op' | 'role' | 'outcome'>
  readonly exchangeBlocks: Counter<'direction'>
  readonly syncBlocks: Counter<never>
  readonly syncLag: Gauge<'peer'>
  readonly syncChainFetches: Gauge<'state'>
  readonly sseClients: Gauge<never>
  // network hardening (issue 8)
  readonly peerConnectionsDenied: Counter<'direction'>
  readonly syncRejected: Counter<'reason'>
  readonly importsRunning: Gauge<never>
  readonly importBufferedBytes: Gauge<never>
  readonly importsRejected: Counter<'reason'>
  // derived state (issue 9): the projection runner
  readonly projectionLag: Gauge<'projection'>
  readonly projectionFold: Histogram<'projection'>
  readonly projectionBlocks: Counter<'projection' | 'outcome'>
  readonly projectionFaults: Counter<'projection'>
  readonly projectionUp: Gauge<'projection'>
  readonly projectionEquivocations: Counter<'projection'>
  // node-to-node RPC (issue 9)
  readonly rpcRequests: Counter<'protocol' | 'outcome'>
  readonly rpcRequestSeconds: Histogram<'protocol'>
  readonly rpcHandled: Counter<'protocol' | 'outcome'>
  readonly rpcHandleSeconds: Histogram<'protocol'>
  readonly peerMisbehaviour: Counter<'reason'>
}

/** Build the registry and all metrics. `collectProcess` adds Node's process metrics (CPU, memory, event loop). */
export function createMetrics(opts: { collectProcess?: boolean; prefix?: string } = {}): Metrics {
  const registry = new Registry()
  // Event-loop delay sampled every 100 ms (default 10 ms): a hundred wake-ups a second cost an idle node about 1%
  // of a core, ten processes on one host ten times that.
  if (opts.collectProcess !== false)
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 })
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
    blockSignatures: new Counter({
      name: 'icn_dag_block_signatures_total',
      help:
        'Signed blocks validated for the store, by how their signature was checked: verified, or signed_here ' +
        '(signed by this process over the same bytes, so not verified again)',
      labelNames: ['check'] as const,
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
    peersConnected: new Gauge({
      name: 'icn_peers_connected',
      help: 'Federation nodes this node is connected to',
      registers,
    }),
    peerRtt: new Gauge({
      name: 'icn_peer_rtt_seconds',
      help: 'Round-trip time of the last ping to each federation peer',
      labelNames: ['peer'] as const,
      registers,
    }),
    redials: new Counter({
      name: 'icn_peer_redials_total',
      help: 'Re-dials of lost federation peers, by outcome (ok, failed, refused: the peer does not accept this node)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    gossipMessages: new Counter({
      name: 'icn_gossip_messages_total',
      help: 'Block gossip messages published (out) and received for validation (in)',
      labelNames: ['direction'] as const,
      registers,
    }),
    gossipBlocks: new Counter({
      name: 'icn_gossip_blocks_total',
      help: 'Blocks carried by gossip messages published (out) and accepted (in)',
      labelNames: ['direction'] as const,
      registers,
    }),
    gossipRejected: new Counter({
      name: 'icn_gossip_rejected_total',
      help: 'Gossip messages rejected (and counted against the sender) or ignored, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    gossipFoldWaits: new Counter({
      name: 'icn_gossip_fold_waits_total',
      help: 'Gossip messages whose forwarding waited for the projections to fold their blocks, by how the wait ended (folded, timeout)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    gossipValidation: new Histogram({
      name: 'icn_gossip_validation_seconds',
      help: 'Time to validate, store (and fold, see icn_gossip_fold_waits_total) one gossip message before it is forwarded, by result',
      labelNames: ['result'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    exchangeDuration: new Histogram({
      name: 'icn_exchange_request_duration_seconds',
      help: 'Block-exchange requests, by operation, role (client, server) and outcome',
      labelNames: ['op', 'role', 'outcome'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    exchangeBlocks: new Counter({
      name: 'icn_exchange_blocks_total',
      help: 'Blocks served to peers over block exchange',
      labelNames: ['direction'] as const,
      registers,
    }),
    syncBlocks: new Counter({
      name: 'icn_sync_blocks_total',
      help: 'Blocks fetched and stored by anti-entropy and gap filling',
      registers,
    }),
    syncLag: new Gauge({
      name: 'icn_sync_lag_blocks',
      help: 'Blocks a peer had that this node lacked, at the last anti-entropy round with it',
      labelNames: ['peer'] as const,
      registers,
    }),
    syncChainFetches: new Gauge({
      name: 'icn_sync_chain_fetches',
      help: 'Chain fetches of anti-entropy and gap filling: running, or queued for one of the node-wide slots',
      labelNames: ['state'] as const,
      registers,
    }),
    sseClients: new Gauge({
      name: 'icn_events_clients',
      help: 'Clients connected to the /v1/events stream',
      registers,
    }),
    // network hardening (issue 8)
    peerConnectionsDenied: new Counter({
      name: 'icn_peer_connections_denied_total',
      help: 'Connections refused by the membership gater (peer not a node of the federation), by direction',
      labelNames: ['direction'] as const,
      registers,
    }),
    syncRejected: new Counter({
      name: 'icn_sync_rejected_total',
      help: 'Replies of peers refused by anti-entropy, gap filling or chunk fetching, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    importsRunning: new Gauge({
      name: 'icn_api_imports_running',
      help: 'CAR imports (POST /v1/dag/import) being read or imported',
      registers,
    }),
    importBufferedBytes: new Gauge({
      name: 'icn_api_import_buffered_bytes',
      help: 'Bytes of CAR uploads held in memory by running imports',
      registers,
    }),
    importsRejected: new Counter({
      name: 'icn_api_imports_rejected_total',
      help: 'CAR imports refused: busy (all import slots taken), too_large, invalid (framing or blocks)',
      labelNames: ['reason'] as const,
      registers,
    }),
    projectionLag: new Gauge({
      name: 'icn_projection_lag_blocks',
      help: 'Blocks stored on the chains a projection folds but not yet folded by it',
      labelNames: ['projection'] as const,
      registers,
    }),
    projectionFold: new Histogram({
      name: 'icn_projection_fold_seconds',
      help: 'Duration of one fold transaction (up to a batch of blocks of one chain), by projection',
      labelNames: ['projection'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    }),
    projectionBlocks: new Counter({
      name: 'icn_projection_blocks_total',
      help: 'Blocks a projection folded, by outcome (applied, rejected, skipped: not its record type, deferred)',
      labelNames: ['projection', 'outcome'] as const,
      registers,
    }),
    projectionFaults: new Counter({
      name: 'icn_projection_faults_total',
      help: 'Folds that threw (rolled back; the projection stops and retries with backoff)',
      labelNames: ['projection'] as const,
      registers,
    }),
    projectionUp: new Gauge({
      name: 'icn_projection_up',
      help: '1 while a projection folds, 0 while it is faulted or stopped',
      labelNames: ['projection'] as const,
      registers,
    }),
    projectionEquivocations: new Counter({
      name: 'icn_projection_equivocations_total',
      help: 'Equivocations seen on chains a projection folds (it keeps folding the block the store holds)',
      labelNames: ['projection'] as const,
      registers,
    }),
    rpcRequests: new Counter({
      name: 'icn_rpc_requests_total',
      help: 'RPC requests this node made, by protocol and outcome (ok, remote_error, timeout, unreachable, too_large, malformed, unknown_protocol, aborted)',
      labelNames: ['protocol', 'outcome'] as const,
      registers,
    }),
    rpcRequestSeconds: new Histogram({
      name: 'icn_rpc_request_seconds',
      help: 'RPC requests this node made, from send to reply, by protocol',
      labelNames: ['protocol'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10],
      registers,
    }),
    rpcHandled: new Counter({
      name: 'icn_rpc_handled_total',
      help: 'RPC requests this node answered, by protocol (unknown for one it has no handler for) and outcome',
      labelNames: ['protocol', 'outcome'] as const,
      registers,
    }),
    rpcHandleSeconds: new Histogram({
      name: 'icn_rpc_handle_seconds',
      help: 'Time the RPC handlers of this node took, by protocol',
      labelNames: ['protocol'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10],
      registers,
    }),
    peerMisbehaviour: new Counter({
      name: 'icn_peer_misbehaviour_total',
      help: 'Protocol violations by federation peers (malformed or oversized frames, broken envelopes), by reason',
      labelNames: ['reason'] as const,
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
