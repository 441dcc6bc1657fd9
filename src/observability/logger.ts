import { AsyncLocalStorage } from 'node:async_hooks'
import { type DestinationStream, type Logger, pino } from 'pino'

export type { Logger } from 'pino'

/** Context carried through async calls so every log line a request (or job) causes names it. */
export interface LogContext {
  reqId?: string
  jobId?: string
}

const contextStore = new AsyncLocalStorage<LogContext>()

/** Run `fn` with the given correlation ids attached to every log line it causes. */
export function withLogContext<T>(ctx: LogContext, fn: () => T): T {
  return contextStore.run({ ...contextStore.getStore(), ...ctx }, fn)
}

/** The correlation ids of the current async context, if any. */
export function currentLogContext(): LogContext | undefined {
  return contextStore.getStore()
}

export interface LoggerOptions {
  level?: string
  name?: string
  destination?: DestinationStream
}

/** The node's root logger: pino JSON lines, with the async context's correlation ids mixed in. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const options = {
    name: opts.name ?? 'icn',
    level: opts.level ?? process.env.ICN_LOG_LEVEL ?? 'info',
    // A fresh object each time: pino merges the line's own fields into what the mixin returns.
    mixin: () => ({ ...contextStore.getStore() }),
    timestamp: pino.stdTimeFunctions.isoTime,
  }
  if (opts.destination) return pino(options, opts.destination)
  // Asynchronous: a line is written while the next ones queue, and what queued goes out in one write, so a busy
  // node makes one system call per batch instead of one per line. pino flushes what is left when the process
  // exits (also through process.exit); a SIGKILL can lose the last lines, never stored data.
  return pino(options, pino.destination({ dest: 2, sync: false }))
}

/** A logger that drops everything, for tests and for CLI commands that run no node. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
