import type { ValidatedBlock } from './block.js'
import { type CID, RAW } from './cid.js'
import { ChainGapError, PrevMismatchError, UnanchoredChunkError } from './errors.js'
import type { PutResult } from './store.js'

/** Key of a chain position in lookup maps. */
export function positionKey(chain: string, seq: number): string {
  return `${seq}@${chain}`
}

export interface PlanInput {
  /** Validated blocks in the order given. */
  blocks: ValidatedBlock[]
  /** CIDs (string form) the store holds at the positions `positionsToLoad` asked for. */
  positions: Map<string, CID>
  /** Raw CIDs (string form) that a stored signed block links. */
  anchored: Set<string>
}

export interface EntryRow {
  chain: string
  seq: number
  cid: CID
  author: string
}

export interface BatchPlan {
  results: PutResult[]
  /** Blocks whose bytes to insert (insert-if-absent). */
  inserts: ValidatedBlock[]
  entries: EntryRow[]
  /** Every link of each new chain entry; `prev` marks the link to the chain predecessor. */
  links: { parent: CID; child: CID; prev: boolean }[]
  evidence: { chain: string; seq: number; first: CID; second: CID }[]
  /** Highest new position per chain. */
  heads: EntryRow[]
}

/**
 * Chain positions and raw CIDs a backend must look up before `planBatch` can decide.
 *
 * With `heads` (the stored head of each chain in the batch; a chain absent from the map has none), positions
 * above a chain's head are known to be free and the head position itself is known, so only positions at or
 * below the head are left to look up: a batch that extends its chains needs no look-up at all. The caller
 * passes the heads into `planBatch`'s `positions` (see `headPositions`).
 */
export function lookupsFor(
  blocks: ValidatedBlock[],
  heads?: Map<string, { seq: number; cid: CID }>,
): {
  positions: { chain: string; seq: number }[]
  raw: CID[]
} {
  const positions: { chain: string; seq: number }[] = []
  const raw: CID[] = []
  const needed = (chain: string, seq: number): boolean => {
    if (!heads) return true
    const head = heads.get(chain)
    return head !== undefined && seq < head.seq
  }
  for (const b of blocks) {
    if (b.kind === 'raw') {
      raw.push(b.cid)
      continue
    }
    const { chain, seq } = b.block
    if (needed(chain, seq)) positions.push({ chain, seq })
    if (seq > 0 && needed(chain, seq - 1)) positions.push({ chain, seq: seq - 1 })
  }
  return { positions, raw }
}

/** Distinct chains of a batch's signed blocks. */
export function chainsOf(blocks: ValidatedBlock[]): string[] {
  const chains = new Set<string>()
  for (const b of blocks) if (b.kind === 'signed') chains.add(b.block.chain)
  return [...chains]
}

/** The heads as known positions, for `planBatch`. */
export function headPositions(heads: Map<string, { seq: number; cid: CID }>): Map<string, CID> {
  const out = new Map<string, CID>()
  for (const [chain, h] of heads) out.set(positionKey(chain, h.seq), h.cid)
  return out
}

/**
 * The chain rules, once for every backend: a block extends its chain only if its predecessor is known and is
 * its `prev`; a second block at an occupied position is evidence; a raw chunk needs a signed block that links it
 * (stored, or earlier in this batch's signed blocks). Pure: throws the first rule broken, or returns what to write.
 */
export function planBatch(input: PlanInput): BatchPlan {
  const positions = new Map(input.positions)
  const anchored = new Set(input.anchored)
  const plan: BatchPlan = { results: [], inserts: [], entries: [], links: [], evidence: [], heads: [] }
  const heads = new Map<string, EntryRow>()
  const results = new Array<PutResult>(input.blocks.length)

  input.blocks.forEach((b, i) => {
    if (b.kind !== 'signed') return
    const { chain, seq, prev, author } = b.block
    const existing = positions.get(positionKey(chain, seq))
    if (existing) {
      if (existing.equals(b.cid)) {
        // Its bytes and links may have been deleted (gc, delete) since: write them again; a no-op otherwise.
        plan.inserts.push(b)
        for (const [k, child] of b.links.entries()) {
          plan.links.push({ parent: b.cid, child, prev: k === 0 && prev !== null })
          if (child.code === RAW) anchored.add(child.toString())
        }
        results[i] = { cid: b.cid, status: 'duplicate' }
      } else {
        plan.inserts.push(b)
        plan.evidence.push({ chain, seq, first: existing, second: b.cid })
        results[i] = { cid: b.cid, status: 'equivocation' }
      }
      return
    }
    if (seq > 0) {
      const before = positions.get(positionKey(chain, seq - 1))
      if (!before) throw new ChainGapError(chain, seq)
      if (!prev || !before.equals(prev))
        throw new PrevMismatchError(chain, seq, before.toString(), String(prev))
    }
    const row = { chain, seq, cid: b.cid, author }
    positions.set(positionKey(chain, seq), b.cid)
    plan.inserts.push(b)
    plan.entries.push(row)
    for (const [k, child] of b.links.entries()) {
      // collectLinks lists prev first (when there is one), then the body's links.
      plan.links.push({ parent: b.cid, child, prev: k === 0 && prev !== null })
      // Only raw chunks need an anchor; skipping the others spares a CID-to-string per block.
      if (child.code === RAW) anchored.add(child.toString())
    }
    const head = heads.get(chain)
    if (!head || head.seq < seq) heads.set(chain, row)
    results[i] = { cid: b.cid, status: 'stored' }
  })

  input.blocks.forEach((b, i) => {
    if (b.kind !== 'raw') return
    if (!anchored.has(b.cid.toString())) throw new UnanchoredChunkError(b.cid.toString())
    plan.inserts.push(b)
    results[i] = { cid: b.cid, status: 'stored' }
  })

  plan.results = results
  plan.heads = [...heads.values()]
  return plan
}
