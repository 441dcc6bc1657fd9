import { describe, expect, it } from 'vitest'
import {
  type Block,
  type CID,
  chainId,
  createRawBlock,
  createSignedBlock,
  encodeValue,
  lookupsFor,
  planBatch,
  positionKey,
  VALUE_RECORD_TYPE,
  type ValidatedBlock,
  validateBlock,
} from '../../../src/dag/index.js'
import { Signer } from '../../../src/identity/index.js'

const signer = Signer.generate()
const chain = chainId(signer.did, 'main')

function record(seq: number, prev: CID | null, body: unknown = { inline: seq }, on = chain): Block {
  return createSignedBlock(signer, { type: VALUE_RECORD_TYPE, chain: on, seq, prev, ts: 1, body })
}

function v(...blocks: Block[]): ValidatedBlock[] {
  return blocks.map((b) => validateBlock(b.cid, b.bytes))
}

/** Blocks 0..n-1 of `chain`. */
function chainOf(n: number, on = chain): Block[] {
  const out: Block[] = []
  let prev: CID | null = null
  for (let seq = 0; seq < n; seq++) {
    const b = record(seq, prev, { inline: seq }, on)
    out.push(b)
    prev = b.cid
  }
  return out
}

function known(entries: [number, Block][], on = chain): Map<string, CID> {
  return new Map(entries.map(([seq, b]) => [positionKey(on, seq), b.cid]))
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}

describe('lookupsFor', () => {
  it('asks for each signed block position and its predecessor, and for each raw CID', () => {
    const [b0, b1] = chainOf(2)
    const chunk = createRawBlock(new Uint8Array([1]))
    const { positions, raw } = lookupsFor(v(b0!, b1!, chunk))
    expect(positions).toEqual([
      { chain, seq: 0 },
      { chain, seq: 1 },
      { chain, seq: 0 },
    ])
    expect(raw.map(String)).toEqual([chunk.cid.toString()])
  })
})

describe('planBatch', () => {
  it('extends a chain from genesis: entries, links, one head at the highest seq', () => {
    const blocks = chainOf(3)
    const plan = planBatch({ blocks: v(...blocks), positions: new Map(), anchored: new Set() })
    expect(plan.results.map((r) => r.status)).toEqual(['stored', 'stored', 'stored'])
    expect(plan.results.map((r) => r.cid.toString())).toEqual(blocks.map((b) => b.cid.toString()))
    expect(plan.entries.map((e) => e.seq)).toEqual([0, 1, 2])
    expect(plan.entries.every((e) => e.chain === chain && e.author === signer.did)).toBe(true)
    expect(plan.links.map((l) => [l.parent.toString(), l.child.toString()])).toEqual([
      [blocks[1]!.cid.toString(), blocks[0]!.cid.toString()],
      [blocks[2]!.cid.toString(), blocks[1]!.cid.toString()],
    ])
    expect(plan.heads).toHaveLength(1)
    expect(plan.heads[0]).toMatchObject({ chain, seq: 2 })
    expect(plan.inserts).toHaveLength(3)
    expect(plan.evidence).toEqual([])
  })

  it('extends a stored chain when the predecessor is known and is prev', () => {
    const [b0, b1] = chainOf(2)
    const plan = planBatch({ blocks: v(b1!), positions: known([[0, b0!]]), anchored: new Set() })
    expect(plan.results[0]!.status).toBe('stored')
    expect(plan.heads[0]).toMatchObject({ seq: 1 })
  })

  it('refuses a block whose predecessor is unknown: CHAIN_GAP', () => {
    const [, b1, b2] = chainOf(3)
    expect(codeOf(() => planBatch({ blocks: v(b1!), positions: new Map(), anchored: new Set() }))).toBe(
      'CHAIN_GAP',
    )
    // order matters inside a batch too
    expect(codeOf(() => planBatch({ blocks: v(b2!, b1!), positions: known([]), anchored: new Set() }))).toBe(
      'CHAIN_GAP',
    )
  })

  it('refuses a block whose prev is not the known predecessor: PREV_MISMATCH', () => {
    const [b0, b1] = chainOf(2)
    const rival0 = record(0, null, { inline: 'rival' })
    const err = (() => {
      try {
        planBatch({ blocks: v(b1!), positions: known([[0, rival0]]), anchored: new Set() })
      } catch (e) {
        return e as { code: string; details: Record<string, unknown> }
      }
    })()
    expect(err?.code).toBe('PREV_MISMATCH')
    expect(err?.details).toMatchObject({
      chain,
      seq: 1,
      expected: rival0.cid.toString(),
      actual: b0!.cid.toString(),
    })
  })

  it('marks a block already at its position a duplicate, and still inserts it and its links (both may have been deleted)', () => {
    const [b0, b1] = chainOf(2)
    const plan = planBatch({
      blocks: v(b1!),
      positions: known([
        [0, b0!],
        [1, b1!],
      ]),
      anchored: new Set(),
    })
    expect(plan.results[0]).toMatchObject({ status: 'duplicate' })
    expect(plan.inserts).toHaveLength(1)
    expect(plan.entries).toEqual([])
    expect(plan.links.map((l) => [String(l.parent), String(l.child), l.prev])).toEqual([
      [String(b1!.cid), String(b0!.cid), true],
    ])
    expect(plan.heads).toEqual([])
  })

  it('keeps a different block at an occupied position as evidence, outside the chain', () => {
    const [b0, b1] = chainOf(2)
    const rival = record(1, b0!.cid, { inline: 'rival' })
    const plan = planBatch({
      blocks: v(rival),
      positions: known([
        [0, b0!],
        [1, b1!],
      ]),
      anchored: new Set(),
    })
    expect(plan.results[0]).toMatchObject({ status: 'equivocation' })
    expect(plan.evidence).toHaveLength(1)
    expect(plan.evidence[0]!.first.equals(b1!.cid)).toBe(true)
    expect(plan.evidence[0]!.second.equals(rival.cid)).toBe(true)
    expect(plan.inserts.map((b) => b.cid.toString())).toEqual([rival.cid.toString()])
    expect(plan.entries).toEqual([])
    expect(plan.links).toEqual([])
    expect(plan.heads).toEqual([])
  })

  it('sees an equivocation between two blocks of the same batch', () => {
    const [b0] = chainOf(1)
    const rival = record(0, null, { inline: 'rival' })
    const plan = planBatch({ blocks: v(b0!, rival), positions: new Map(), anchored: new Set() })
    expect(plan.results.map((r) => r.status)).toEqual(['stored', 'equivocation'])
    expect(plan.entries).toHaveLength(1)
  })

  it('accepts chunks linked by a signed block of the batch, wherever they stand in it', () => {
    const { body, chunks } = encodeValue(new Uint8Array(1024 * 1024 + 1))
    const rec = record(0, null, body)
    const plan = planBatch({
      blocks: v(chunks[0]!, rec, chunks[1]!),
      positions: new Map(),
      anchored: new Set(),
    })
    expect(plan.results.map((r) => r.status)).toEqual(['stored', 'stored', 'stored'])
    expect(plan.links).toHaveLength(2)
    // signed blocks are inserted before the chunks
    expect(plan.inserts.map((b) => b.kind)).toEqual(['signed', 'raw', 'raw'])
  })

  it('accepts chunks a stored block links, and those a duplicate of a stored block links', () => {
    const { body, chunks } = encodeValue(new Uint8Array(1024 * 1024 + 1))
    const rec = record(0, null, body)
    const anchored = new Set([chunks[0]!.cid.toString()])
    const plan = planBatch({ blocks: v(chunks[0]!), positions: new Map(), anchored })
    expect(plan.results[0]!.status).toBe('stored')
    const again = planBatch({ blocks: v(rec, chunks[1]!), positions: known([[0, rec]]), anchored: new Set() })
    expect(again.results.map((r) => r.status)).toEqual(['duplicate', 'stored'])
  })

  it('refuses a chunk nothing links: UNANCHORED_CHUNK', () => {
    const [b0] = chainOf(1)
    const chunk = createRawBlock(new Uint8Array([9, 9]))
    expect(
      codeOf(() => planBatch({ blocks: v(b0!, chunk), positions: new Map(), anchored: new Set() })),
    ).toBe('UNANCHORED_CHUNK')
  })

  it('tracks several chains at once, one head each', () => {
    const other = chainId(signer.did, 'other')
    const a = chainOf(3)
    const b = chainOf(2, other)
    const plan = planBatch({
      blocks: v(a[0]!, b[0]!, a[1]!, b[1]!, a[2]!),
      positions: new Map(),
      anchored: new Set(),
    })
    expect(plan.heads.map((h) => [h.chain, h.seq]).sort()).toEqual(
      [
        [chain, 2],
        [other, 1],
      ].sort(),
    )
  })

  it('does not change its inputs', () => {
    const [b0, b1] = chainOf(2)
    const positions = known([[0, b0!]])
    const anchored = new Set<string>()
    planBatch({ blocks: v(b1!), positions, anchored })
    expect(positions.size).toBe(1)
    expect(anchored.size).toBe(0)
  })
})
