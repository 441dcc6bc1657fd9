/**
 * Observability: the one metrics registry (prom-client), the pino logger (correlation ids travel in child
 * loggers passed down), the event bus behind `/v1/events`, and the readiness registry behind `/ready`.
 */
export { EventBus, type NodeEvent } from './events.js'
export { type ComponentStatus, type HealthCheck, Readiness, type ReadinessReport } from './health.js'
export {
  createLogger,
  type Logger,
  type LoggerOptions,
  silentLogger,
} from './logger.js'
export { createMetrics, type Metrics, timed } from './metrics.js'
