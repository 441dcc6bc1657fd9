/**
 * Time for the network's timers (re-dial, ping, anti-entropy), injected so tests (and later a deterministic
 * whole-federation run) can drive them without waiting on real time.
 */
export interface Clock {
  /** ms since the epoch. */
  now(): number
  /** Call `callback` once after `ms`; the handle goes to `clearTimeout`. Must not keep the process alive. */
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/** The real clock: `Date.now` and unref'd Node timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const t = setTimeout(callback, ms)
    t.unref()
    return t
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
}
