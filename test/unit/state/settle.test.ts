import { describe, expect, it } from 'vitest'
import { FoldSettling, MAX_POSITIONS } from '../../../src/state/settle.js'
import { ManualClock } from '../../helpers/manual-clock.js'

/** A FoldSettling whose pending folds are the positions in `pending` (chain:seq). */
function settling(): { s: FoldSettling; pending: Set<string>; clock: ManualClock } {
  const pending = new Set<string>()
  const clock = new ManualClock()
  const s = new FoldSettling(clock, (chain, seq) => pending.has(`${chain}:${seq}`))
  return { s, pending, clock }
}

describe('FoldSettling', () => {
  it('waits for every noted block of the call, and ends when check finds none pending', async () => {
    const t = settling()
    t.s.note('cid-a', 'c1', 0)
    t.s.note('cid-b', 'c2', 4)
    t.pending.add('c1:0').add('c2:4')
    let outcome: string | undefined
    const w = t.s.wait(['cid-a', 'cid-b', 'cid-unknown'], 1_000).then((o) => {
      outcome = o
    })
    t.pending.delete('c1:0')
    t.s.check()
    await Promise.resolve()
    expect(outcome).toBeUndefined()
    t.pending.delete('c2:4')
    t.s.check()
    await w
    expect(outcome).toBe('folded')
    expect(t.s.size).toBe(0)
    expect(t.clock.pending).toBe(0)
  })

  it('does not wait for blocks not noted, not pending, or already asked for', async () => {
    const t = settling()
    expect(await t.s.wait(['nothing'], 1_000)).toBe('none')
    t.s.note('cid-a', 'c1', 0)
    expect(await t.s.wait(['cid-a'], 1_000)).toBe('none')
    t.s.note('cid-b', 'c1', 1)
    t.pending.add('c1:1')
    const w = t.s.wait(['cid-b'], 1_000)
    // Asked for once: a second call for the same block does not wait again.
    expect(await t.s.wait(['cid-b'], 1_000)).toBe('none')
    t.s.clear()
    expect(await w).toBe('folded')
  })

  it('ends a wait at its timeout on the injected clock', async () => {
    const t = settling()
    t.s.note('cid-a', 'c1', 0)
    t.pending.add('c1:0')
    let outcome: string | undefined
    const w = t.s.wait(['cid-a'], 500).then((o) => {
      outcome = o
    })
    t.clock.advance(499)
    await Promise.resolve()
    expect(outcome).toBeUndefined()
    t.clock.advance(1)
    await w
    expect(outcome).toBe('timeout')
    expect(t.s.size).toBe(0)
  })

  it(`remembers at most ${MAX_POSITIONS} positions, forgetting the oldest`, async () => {
    const t = settling()
    for (let i = 0; i <= MAX_POSITIONS; i++) t.s.note(`cid-${i}`, 'c', i)
    t.pending.add('c:0').add(`c:${MAX_POSITIONS}`)
    expect(await t.s.wait(['cid-0'], 1_000)).toBe('none')
    const w = t.s.wait([`cid-${MAX_POSITIONS}`], 1_000)
    expect(t.s.size).toBe(1)
    t.s.clear()
    expect(await w).toBe('folded')
  })
})
