import { Writable } from 'node:stream'
import { beforeEach, describe, expect, it } from 'vitest'
import {
  type AvailabilityEvent,
  StoreHealthMonitor,
  StoreUnavailableError,
  type TimerClock,
} from '../../../src/dag/index.js'
import { createLogger, createMetrics, type Metrics } from '../../../src/observability/index.js'

/**
 * In-memory stand-in for a block store: `ping`, which a test can make fail or hang, and `onAvailability`, whose
 * events a test sends with `operation(up)` as a real store does after each operation.
 */
class InMemoryPingStore {
  readonly backend = 'postgres' as const
  mode: 'up' | 'down' | 'hang' = 'up'
  pings = 0
  readonly listeners = new Set<(e: AvailabilityEvent) => void>()

  onAvailability(listener: (e: AvailabilityEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** An operation (a write, a read) finished: answered, or found the database unavailable. */
  operation(up: boolean): void {
    const error = up
      ? undefined
      : new StoreUnavailableError('PostgreSQL database at db:5432/x did not answer')
    for (const l of this.listeners) l({ up, error })
  }

  async ping(): Promise<void> {
    this.pings++
    if (this.mode === 'down')
      throw new StoreUnavailableError('PostgreSQL database at db:5432/x is unreachable')
    if (this.mode === 'hang') await new Promise(() => {})
  }
}

/** Timers driven by `advance`, so the test decides when time passes. */
class ManualClock implements TimerClock {
  now = 0
  private nextId = 1
  private readonly timers = new Map<number, { at: number; fn: () => void }>()

  setTimeout(fn: () => void, ms: number): number {
    const id = this.nextId++
    this.timers.set(id, { at: this.now + ms, fn })
    return id
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number)
  }

  get pending(): number[] {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b)
  }

  /** Move time forward, firing due timers in order and letting the promises they start settle. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms
    await settle()
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0]
      if (!due) break
      this.timers.delete(due[0])
      this.now = due[1].at
      due[1].fn()
      await settle()
    }
    this.now = end
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

describe('StoreHealthMonitor', () => {
  let store: InMemoryPingStore
  let clock: ManualClock
  let metrics: Metrics
  let lines: { level: number; msg: string }[]
  let monitor: StoreHealthMonitor

  const storeUp = async (): Promise<number | undefined> => (await metrics.storeUp.get()).values[0]?.value

  beforeEach(() => {
    store = new InMemoryPingStore()
    clock = new ManualClock()
    metrics = createMetrics({ collectProcess: false })
    lines = []
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(JSON.parse(chunk.toString()))
        done()
      },
    })
    const logger = createLogger({ level: 'debug', destination })
    monitor = new StoreHealthMonitor(
      { intervalMs: 2000, initialBackoffMs: 250, maxBackoffMs: 2000, pingTimeoutMs: 1000 },
      { store, clock, metrics, logger },
    )
  })

  it('is not ready before its first ping, and ready once the store answers', async () => {
    expect(monitor.status()).toMatchObject({ ready: false })
    monitor.start()
    await clock.advance(0)
    expect(monitor.status()).toEqual({ ready: true })
    expect(await storeUp()).toBe(1)
    monitor.stop()
  })

  it('pings every interval while the store answers', async () => {
    monitor.start()
    await clock.advance(0)
    await clock.advance(2000 * 5)
    expect(store.pings).toBe(6)
    expect(clock.pending).toEqual([2000])
    monitor.stop()
  })

  it('start and stop are idempotent; stop before start is fine; nothing runs after stop', async () => {
    monitor.stop()
    monitor.start()
    monitor.start()
    await clock.advance(0)
    await clock.advance(2000)
    expect(store.pings).toBe(2)
    monitor.stop()
    monitor.stop()
    expect(clock.pending).toEqual([])
    await clock.advance(10_000)
    expect(store.pings).toBe(2)
    expect(monitor.status().ready).toBe(true)
  })

  it('goes not-ready on a failed ping, backs off exponentially, logs once down and once back up', async () => {
    monitor.start()
    await clock.advance(0)
    store.mode = 'down'
    await clock.advance(2000)
    expect(monitor.status()).toEqual({ ready: false, detail: expect.stringMatching(/unreachable/) })
    expect(await storeUp()).toBe(0)
    // retries at 250, 500, 1000, 2000 (the cap), 2000 ms
    const delays: number[] = []
    for (let i = 0; i < 5; i++) {
      delays.push(clock.pending[0]!)
      await clock.advance(clock.pending[0]!)
    }
    expect(delays).toEqual([250, 500, 1000, 2000, 2000])
    expect(monitor.status().ready).toBe(false)
    expect(lines.filter((l) => l.msg === 'block store unreachable')).toHaveLength(1)

    store.mode = 'up'
    await clock.advance(clock.pending[0]!)
    expect(monitor.status()).toEqual({ ready: true })
    expect(await storeUp()).toBe(1)
    expect(lines.filter((l) => l.msg === 'block store reachable again')).toHaveLength(1)
    // back to the normal interval, and the backoff starts over on the next outage
    expect(clock.pending).toEqual([2000])
    store.mode = 'down'
    await clock.advance(2000)
    expect(clock.pending).toEqual([250])
    expect(lines.filter((l) => l.msg === 'block store unreachable')).toHaveLength(2)
    monitor.stop()
  })

  it('reportFailure turns readiness off at once and checks again soon', async () => {
    monitor.start()
    await clock.advance(0)
    const err = new StoreUnavailableError(
      'PostgreSQL database at db:5432/x is unreachable: connection refused',
    )
    monitor.reportFailure(err)
    expect(monitor.status()).toEqual({ ready: false, detail: err.message })
    expect(await storeUp()).toBe(0)
    expect(clock.pending).toEqual([250])
    // a second report while already down changes nothing
    monitor.reportFailure(err)
    expect(clock.pending).toEqual([250])
    expect(lines.filter((l) => l.msg === 'block store unreachable')).toHaveLength(1)
    // the store is in fact reachable again: the next ping says so
    await clock.advance(250)
    expect(monitor.status().ready).toBe(true)
    monitor.stop()
  })

  it('counts a ping that does not answer in time as a failure', async () => {
    store.mode = 'hang'
    monitor.start()
    await clock.advance(0)
    expect(monitor.status().ready).toBe(false)
    await clock.advance(1000)
    expect(monitor.status()).toEqual({ ready: false, detail: expect.stringMatching(/did not answer/) })
    expect(clock.pending).toEqual([250])
    store.mode = 'up'
    await clock.advance(250)
    expect(monitor.status().ready).toBe(true)
    monitor.stop()
  })

  it('a store operation that got its answer marks the store up at once, and the backoff starts over', async () => {
    monitor.start()
    await clock.advance(0)
    store.mode = 'down'
    await clock.advance(2000)
    for (let i = 0; i < 4; i++) await clock.advance(clock.pending[0]!)
    expect(clock.pending).toEqual([2000]) // the next retry is a whole backoff away
    expect(monitor.status().ready).toBe(false)

    // the database is back and a write succeeds: readiness follows it now, not at the next retry
    store.mode = 'up'
    store.operation(true)
    expect(monitor.status()).toEqual({ ready: true })
    expect(await storeUp()).toBe(1)
    expect(lines.filter((l) => l.msg === 'block store reachable again')).toHaveLength(1)
    expect(clock.pending).toEqual([2000]) // the normal interval, not the backoff
    const pings = store.pings
    await clock.advance(2000)
    expect(store.pings).toBe(pings + 1)
    // successes while up change nothing; a failed operation marks it down at once and retries soon
    store.operation(true)
    expect(clock.pending).toEqual([2000])
    store.operation(false)
    expect(monitor.status()).toEqual({ ready: false, detail: expect.stringMatching(/did not answer/) })
    expect(clock.pending).toEqual([250])
    monitor.stop()
    expect(store.listeners.size).toBe(0)
    store.operation(true)
    expect(monitor.status().ready).toBe(false) // stopped: no longer listening
  })

  it('backs off at most 5 s apart by default', async () => {
    const m = new StoreHealthMonitor({}, { store, clock, metrics })
    m.start()
    await clock.advance(0)
    store.mode = 'down'
    await clock.advance(2000)
    const delays: number[] = []
    for (let i = 0; i < 8; i++) {
      delays.push(clock.pending[0]!)
      await clock.advance(clock.pending[0]!)
    }
    expect(delays).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000])
    m.stop()
  })

  it('check() pings once now and reports the result', async () => {
    expect(await monitor.check()).toEqual({ ready: true })
    store.mode = 'down'
    expect(await monitor.check()).toMatchObject({ ready: false })
    expect(store.pings).toBe(2)
  })
})
