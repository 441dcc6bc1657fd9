import type { Clock } from '../network/clock.js'

/** A chain position: block `seq` of `chain`. */
export interface Position {
  chain: string
  seq: number
}

interface Waiting {
  positions: Position[]
  done: (outcome: SettleOutcome) => void
}

/** How a wait ended: nothing was pending, the folds ended (done, refused, faulted or deferred), or the timeout. */
export type SettleOutcome = 'none' | 'folded' | 'timeout'

/** Positions remembered at most (the oldest are forgotten first: nobody asked for them in time). */
export const MAX_POSITIONS = 4_096

/**
 * Waiting, by block CID, for the runner to fold what the store just committed: block gossip relays a block once
 * the node's projections folded it (see `ProjectionRunner.settled`). The runner notes the position of each block
 * committed to a chain some projection folds (`note`), and calls `check` whenever a fold may have ended a wait
 * (a cursor moved, a projection faulted or deferred a chain, the runner stopped). A wait never outlasts its
 * timeout and never fails: it is a courtesy to the relay, not a condition of it.
 */
export class FoldSettling {
  private readonly positions = new Map<string, Position>()
  private readonly waiting = new Set<Waiting>()

  constructor(
    private readonly clock: Clock,
    /** Whether a fold up to this position is still to come (some projection is behind, and neither faulted nor deferred). */
    private readonly pending: (chain: string, seq: number) => boolean,
  ) {}

  /** Remember where block `cid` sits; a later `wait` for it waits for its fold. */
  note(cid: string, chain: string, seq: number): void {
    if (this.positions.size >= MAX_POSITIONS) {
      const oldest = this.positions.keys().next().value as string
      this.positions.delete(oldest)
    }
    this.positions.set(cid, { chain, seq })
  }

  /**
   * Resolves once no fold is pending for any of the blocks `cids` (each forgotten as it is asked for), or after
   * `timeoutMs`. Blocks that were not noted (none of their chains is folded, or they were forgotten) do not wait.
   */
  wait(cids: readonly string[], timeoutMs: number): Promise<SettleOutcome> {
    const positions: Position[] = []
    for (const cid of cids) {
      const p = this.positions.get(cid)
      if (!p) continue
      this.positions.delete(cid)
      if (this.pending(p.chain, p.seq)) positions.push(p)
    }
    if (positions.length === 0) return Promise.resolve('none')
    return new Promise((resolve) => {
      const w: Waiting = {
        positions,
        done: (outcome) => {
          this.waiting.delete(w)
          this.clock.clearTimeout(timer)
          resolve(outcome)
        },
      }
      const timer = this.clock.setTimeout(() => w.done('timeout'), timeoutMs)
      this.waiting.add(w)
    })
  }

  /** End the waits whose folds are no longer pending. */
  check(): void {
    for (const w of this.waiting) if (!w.positions.some((p) => this.pending(p.chain, p.seq))) w.done('folded')
  }

  /** End every wait and forget every position (the runner stopped). */
  clear(): void {
    for (const w of this.waiting) w.done('folded')
    this.positions.clear()
  }

  /** Waits in progress (tests, metrics). */
  get size(): number {
    return this.waiting.size
  }
}
