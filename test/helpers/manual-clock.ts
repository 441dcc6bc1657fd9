import type { Clock } from '../../src/network/index.js'

/** A clock that moves only when the test says so; timers fire, in order, as `advance` passes them. */
export class ManualClock implements Clock {
  private t: number
  private seq = 0
  private readonly timers = new Map<number, { at: number; seq: number; callback: () => void }>()

  constructor(start = 1_000_000) {
    this.t = start
  }

  now(): number {
    return this.t
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.seq
    this.timers.set(id, { at: this.t + Math.max(0, ms), seq: id, callback })
    return id
  }

  clearTimeout(handle: unknown): void {
    if (typeof handle === 'number') this.timers.delete(handle)
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.timers.size
  }

  /** Move time on by `ms`, firing every timer due on the way; returns how many fired. */
  advance(ms: number): number {
    const end = this.t + ms
    let fired = 0
    for (;;) {
      let next: [number, { at: number; seq: number; callback: () => void }] | undefined
      for (const e of this.timers)
        if (
          e[1].at <= end &&
          (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[1].seq < next[1].seq))
        )
          next = e
      if (!next) break
      this.timers.delete(next[0])
      this.t = next[1].at
      next[1].callback()
      fired++
    }
    this.t = end
    return fired
  }
}
