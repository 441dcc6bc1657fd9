/**
 * Observability: the one metrics registry (prom-client), the pino logger with correlation ids carried
 * through async calls (AsyncLocalStorage), and the readiness registry behind `/ready`.
 */
export { EventBus, type NodeEvent } from './events.js'
export { type ComponentStatus, type HealthCheck, Readiness, type ReadinessReport } from './health.js'
export {
  createLogger,
  currentLogContext,
  type LogContext,
  type Logger,
  type LoggerOptions,
  silentLogger,
  withLogContext,
} from './logger.js'
export { createMetrics, type Metrics, timed } from './metrics.js'
