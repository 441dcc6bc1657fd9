/**
 * Blocks just committed to chains some projection folds, as the store decoded and validated them, by chain and
 * seq. The projection runner folds from here instead of reading a block back and decoding it again (on a busy
 * node, a quarter of a small block's fold); whatever is not here it reads from the store. Bounded: past `max`
 * blocks everything is forgotten at once, and the folds read from the store until new commits come.
 */
import type { Block, SignedBlock } from '../dag/index.js'

/** A block to fold: as read from the store, or as the store decoded it when it committed it. */
export type FoldBlock = Block & { block?: SignedBlock }

export class FreshBlocks {
  private readonly byChain = new Map<string, Map<number, FoldBlock>>()
  private count = 0

  constructor(private readonly max = 1024) {}

  /** Blocks held, all chains together. */
  get size(): number {
    return this.count
  }

  keep(chain: string, seq: number, b: FoldBlock): void {
    if (this.count >= this.max) this.clear()
    let m = this.byChain.get(chain)
    if (!m) {
      m = new Map()
      this.byChain.set(chain, m)
    }
    if (!m.has(seq)) this.count++
    m.set(seq, { cid: b.cid, bytes: b.bytes, block: b.block })
  }

  /** Consecutive blocks of `chain` from `from` (at most `limit`), or undefined if `from` is not held. */
  range(chain: string, from: number, limit: number): FoldBlock[] | undefined {
    const m = this.byChain.get(chain)
    if (!m?.has(from)) return undefined
    const out: FoldBlock[] = []
    for (let seq = from; out.length < limit; seq++) {
      const b = m.get(seq)
      if (!b) break
      out.push(b)
    }
    return out
  }

  /** Forget the blocks of `chain` at or before `seq` (every projection folding it is past them). */
  forgetUpTo(chain: string, seq: number): void {
    const m = this.byChain.get(chain)
    if (!m) return
    for (const s of m.keys())
      if (s <= seq) {
        m.delete(s)
        this.count--
      }
    if (m.size === 0) this.byChain.delete(chain)
  }

  clear(): void {
    this.byChain.clear()
    this.count = 0
  }
}
