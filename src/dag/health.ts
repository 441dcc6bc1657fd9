import { ExponentialBackoff, type IBackoff, noJitterGenerator } from 'cockatiel'
import type { Logger, Metrics } from '../observability/index.js'
import type { BlockStore } from './store.js'

export interface StoreHealthOptions {
  /** Time between pings while the store answers (default 2000 ms). */
  intervalMs?: number
  /** First retry delay after a failure; doubles on each further failure (default 250 ms). */
  initialBackoffMs?: number
  /** Longest delay between retries while the store is down (default 5000 ms). */
  maxBackoffMs?: number
  /** A ping that has not answered after this long counts as failed (default 5000 ms). */
  pingTimeoutMs?: number
}

/** Timers, injected so tests (and later a deterministic whole-federation run) can drive the monitor without real time. */
export interface TimerClock {
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export interface StoreHealthComponents {
  /** With `onAvailability`, every store operation's outcome counts: a success marks the store up at once. */
  store: Pick<BlockStore, 'backend' | 'ping'> & Partial<Pick<BlockStore, 'onAvailability'>>
  logger?: Logger
  metrics?: Metrics
  clock?: TimerClock
}

export interface StoreHealthStatus {
  ready: boolean
  detail?: string
}

/**
 * Watches the block store: pings it every `intervalMs` while it answers, and after a failure retries with
 * exponential backoff (at most `maxBackoffMs` apart) until a ping succeeds again (the pg pool reconnects by
 * itself, so that is the recovery). Every store operation counts as a check too (the store's
 * `onAvailability`): one that got its answer marks the store up at once, one that found it unavailable marks it
 * down, so `/ready` follows the writes rather than lagging a backoff behind them. `status()` is cached for the
 * readiness route; `reportFailure()` lets a failed write turn readiness off at once. Logs once when the store
 * goes down and once when it comes back.
 */
export class StoreHealthMonitor {
  private readonly intervalMs: number
  private readonly pingTimeoutMs: number
  private readonly backoff: ExponentialBackoff<number>
  private readonly clock: TimerClock
  private running = false
  private timer?: unknown
  private checking?: Promise<StoreHealthStatus>
  private current: StoreHealthStatus = { ready: false, detail: 'store not checked yet' }
  private down = false
  private retry?: IBackoff<unknown>
  private failures = 0
  private unsubscribe?: () => void

  constructor(
    opts: StoreHealthOptions,
    private readonly components: StoreHealthComponents,
  ) {
    this.intervalMs = opts.intervalMs ?? 2000
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 5000
    this.backoff = new ExponentialBackoff({
      initialDelay: opts.initialBackoffMs ?? 250,
      maxDelay: opts.maxBackoffMs ?? 5000,
      generator: noJitterGenerator,
    })
    this.clock = components.clock ?? { setTimeout, clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) }
  }

  /** Start pinging (the first ping runs at once). Idempotent. */
  start(): void {
    if (this.running) return
    this.running = true
    this.unsubscribe = this.components.store.onAvailability?.((e) =>
      e.up ? this.reportSuccess() : this.reportFailure(e.error),
    )
    this.schedule(0)
  }

  /** Stop pinging and listening. Idempotent; the last known status stays readable. */
  stop(): void {
    this.running = false
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.cancel()
  }

  /**
   * A store operation got its answer: if the store was down it is up now, and the backoff starts over (the next
   * ping comes after the normal interval).
   */
  reportSuccess(): void {
    if (!this.down) return
    this.markUp()
    if (this.running && !this.checking) {
      this.cancel()
      this.schedule(this.intervalMs)
    }
  }

  /** The last known readiness; never waits on the database. Not ready until a first ping has answered. */
  status(): StoreHealthStatus {
    return { ...this.current }
  }

  /** A write failed because the store is unreachable: readiness turns false now, and retries start. */
  reportFailure(err: unknown): void {
    const wasDown = this.down
    this.markDown(err)
    if (!wasDown && this.running && !this.checking) {
      this.cancel()
      this.schedule(this.nextBackoff())
    }
  }

  /** Ping once now and update the status (the timer loop calls this; tests may too). */
  check(): Promise<StoreHealthStatus> {
    this.checking ??= this.pingOnce().finally(() => {
      this.checking = undefined
    })
    return this.checking
  }

  private async pingOnce(): Promise<StoreHealthStatus> {
    let handle: unknown
    const timeout = new Promise<never>((_, reject) => {
      handle = this.clock.setTimeout(
        () => reject(new Error(`store did not answer a ping within ${this.pingTimeoutMs} ms`)),
        this.pingTimeoutMs,
      )
    })
    try {
      await Promise.race([this.components.store.ping(), timeout])
      this.markUp()
    } catch (err) {
      this.markDown(err)
    } finally {
      this.clock.clearTimeout(handle)
    }
    return this.status()
  }

  private markUp(): void {
    this.components.metrics?.storeUp.set({ backend: this.components.store.backend }, 1)
    if (this.down)
      this.components.logger?.info({ failedChecks: this.failures }, 'block store reachable again')
    this.current = { ready: true }
    this.down = false
    this.failures = 0
    this.retry = undefined
  }

  private markDown(err: unknown): void {
    const detail = err instanceof Error ? err.message : String(err)
    this.components.metrics?.storeUp.set({ backend: this.components.store.backend }, 0)
    this.failures++
    if (!this.down) this.components.logger?.warn({ err: detail }, 'block store unreachable')
    this.current = { ready: false, detail }
    this.down = true
  }

  private nextBackoff(): number {
    this.retry = this.retry ? this.retry.next(undefined) : this.backoff.next()
    return this.retry.duration
  }

  private schedule(ms: number): void {
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined
      void this.check().then((s) => {
        if (this.running && this.timer === undefined)
          this.schedule(s.ready ? this.intervalMs : this.nextBackoff())
      })
    }, ms)
  }

  private cancel(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer)
    this.timer = undefined
  }
}
