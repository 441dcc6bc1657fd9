import { Value } from 'typebox/value'
import { describe, expect, it } from 'vitest'
import {
  checkParameters,
  defaultParameters,
  describeParameters,
  FederationParametersSchema,
  InvalidParameterError,
  parseParameterAssignments,
} from '../../../src/federation/index.js'

const BOUNDS = {
  syncIntervalMs: { default: 10_000, minimum: 1_000, maximum: 3_600_000 },
  maxMessageBytes: { default: 1_048_576, minimum: 65_536, maximum: 4_194_304 },
  maxBlocksPerResponse: { default: 1_024, minimum: 16, maximum: 4_096 },
  maxResponseBytes: { default: 4_194_304, minimum: 262_144, maximum: 16_777_216 },
  manaCap: { default: 10_000, minimum: 0, maximum: 1_000_000_000_000 },
  manaRegenSeconds: { default: 86_400, minimum: 1, maximum: 31_536_000 },
  memberAllocation: { default: 10_000, minimum: 0, maximum: 1_000_000_000_000 },
  treasuryAllocation: { default: 0, minimum: 0, maximum: 1_000_000_000_000_000 },
  settlementFeeBps: { default: 100, minimum: 0, maximum: 10_000 },
  ledgerSkewMs: { default: 30_000, minimum: 0, maximum: 3_600_000 },
  recordMaxTtlMs: { default: 3_600_000, minimum: 1_000, maximum: 604_800_000 },
} as const
type Name = keyof typeof BOUNDS
const NAMES = Object.keys(BOUNDS) as Name[]

/** The InvalidParameterError `fn` throws (fails the test if it throws anything else or nothing). */
function paramError(fn: () => unknown): InvalidParameterError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidParameterError)
    expect((err as InvalidParameterError).code).toBe('INVALID_PARAMETER')
    return err as InvalidParameterError
  }
  throw new Error('expected an InvalidParameterError')
}

describe('federation parameters', () => {
  it('have the documented defaults, bounds and a description each', () => {
    expect(defaultParameters()).toEqual(Object.fromEntries(NAMES.map((n) => [n, BOUNDS[n].default])))
    const rows = describeParameters()
    expect(rows.map((r) => r.name)).toEqual(NAMES)
    for (const r of rows) {
      expect(r).toMatchObject(BOUNDS[r.name as Name])
      expect(r.description.length).toBeGreaterThan(10)
    }
    expect(Value.Check(FederationParametersSchema, defaultParameters())).toBe(true)
  })

  it('fills defaults for missing keys and keeps given ones, without changing the input', () => {
    expect(checkParameters({})).toEqual(defaultParameters())
    const input = { maxBlocksPerResponse: 64 }
    expect(checkParameters(input)).toEqual({ ...defaultParameters(), maxBlocksPerResponse: 64 })
    expect(input).toEqual({ maxBlocksPerResponse: 64 })
    expect(defaultParameters()).not.toBe(defaultParameters())
  })

  it.each(NAMES)('%s: accepts both bounds, rejects one past each with its bounds in the error', (name) => {
    const { minimum, maximum } = BOUNDS[name]
    expect(checkParameters({ [name]: minimum })[name]).toBe(minimum)
    expect(checkParameters({ [name]: maximum })[name]).toBe(maximum)
    for (const value of [minimum - 1, maximum + 1]) {
      const err = paramError(() => checkParameters({ [name]: value }))
      expect(err.message).toContain(name)
      expect(err.message).toContain(`from ${minimum} to ${maximum}`)
      expect(err.details).toEqual({ name, value, minimum, maximum })
    }
  })

  it('rejects values that are not integers', () => {
    for (const value of [
      1500.5,
      '10000',
      Number.NaN,
      Number.POSITIVE_INFINITY,
      null,
      true,
      10_000n,
      [10_000],
      {},
    ])
      expect(paramError(() => checkParameters({ syncIntervalMs: value })).details).toMatchObject({
        name: 'syncIntervalMs',
        minimum: 1_000,
        maximum: 3_600_000,
      })
  })

  it('rejects unknown keys, naming them and the known ones', () => {
    const err = paramError(() => checkParameters({ syncIntervalMs: 5_000, gossipFanout: 6 }))
    expect(err.message).toContain('"gossipFanout"')
    expect(err.message).toContain('syncIntervalMs')
    expect(err.details).toEqual({ name: 'gossipFanout', value: 6 })
    paramError(() => checkParameters({ constructor: 1 }))
  })

  it('rejects anything but a plain map', () => {
    for (const input of [null, undefined, 5, 'syncIntervalMs=5000', [], new Map(), new Uint8Array(2)])
      paramError(() => checkParameters(input))
  })

  it('the schema rejects what checkParameters rejects', () => {
    expect(Value.Check(FederationParametersSchema, { ...defaultParameters(), extra: 1 })).toBe(false)
    expect(
      Value.Check(FederationParametersSchema, { ...defaultParameters(), maxBlocksPerResponse: 15 }),
    ).toBe(false)
  })
})

describe('parseParameterAssignments', () => {
  it('parses key=value integers into a partial map', () => {
    expect(parseParameterAssignments([])).toEqual({})
    expect(parseParameterAssignments(['syncIntervalMs=5000', 'maxBlocksPerResponse=16'])).toEqual({
      syncIntervalMs: 5000,
      maxBlocksPerResponse: 16,
    })
  })

  it('leaves bounds to checkParameters: an out-of-range integer parses, then fails the check', () => {
    const parsed = parseParameterAssignments(['syncIntervalMs=-5'])
    expect(parsed).toEqual({ syncIntervalMs: -5 })
    paramError(() => checkParameters(parsed))
  })

  it('rejects unknown keys, malformed assignments, non-integers and repeated keys', () => {
    expect(paramError(() => parseParameterAssignments(['fanout=6'])).details).toMatchObject({
      name: 'fanout',
    })
    for (const item of ['syncIntervalMs', '=5000', 'syncIntervalMs='])
      paramError(() => parseParameterAssignments([item]))
    for (const value of ['1_000', '1e4', '5000.0', 'abc', '0x1000', '99999999999999999999'])
      expect(paramError(() => parseParameterAssignments([`syncIntervalMs=${value}`])).message).toContain(
        'syncIntervalMs must be an integer from 1000 to 3600000',
      )
    const twice = paramError(() => parseParameterAssignments(['syncIntervalMs=5000', 'syncIntervalMs=6000']))
    expect(twice.message).toContain('more than once')
  })
})
