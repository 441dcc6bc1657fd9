import { type DestinationStream, type Logger, pino } from 'pino'

export type { Logger } from 'pino'

/*
 * Correlation ids go into child loggers, which are passed down explicitly (a request's handler hands
 * `req.log`, bound to its `reqId`, to the modules it calls). Not AsyncLocalStorage: on Node 20 it installs
 * promise hooks for the whole process, and libp2p makes promises at a high rate; measured on a busy 10-node
 * devnet, the hooks alone cost about 18% of every node's CPU.
 */

export interface LoggerOptions {
  level?: string
  name?: string
  destination?: DestinationStream
}

/** The node's root logger: pino JSON lines. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const options = {
    name: opts.name ?? 'icn',
    level: opts.level ?? process.env.ICN_LOG_LEVEL ?? 'info',
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
