import { type Static, Type } from 'typebox'
import { Value } from 'typebox/value'
import { InvalidParameterError } from './errors.js'

/**
 * The federation's parameters, fixed in its genesis. Every parameter is an integer with a default and inclusive
 * bounds. A new genesis records every parameter (defaults filled); a genesis written before a parameter existed
 * lacks it, and then the parameter takes its default. So a default, once released, is part of the protocol and
 * never changes (a new value is a new parameter); parameters are only ever added, never removed or renamed.
 */
export const FederationParametersSchema = Type.Object(
  {
    syncIntervalMs: Type.Integer({
      description: 'anti-entropy period: how often a node compares chain heads with a peer (ms)',
      default: 10_000,
      minimum: 1_000,
      maximum: 3_600_000,
    }),
    maxMessageBytes: Type.Integer({
      description: 'largest gossip message accepted (bytes)',
      default: 1_048_576,
      minimum: 65_536,
      maximum: 4_194_304,
    }),
    maxBlocksPerResponse: Type.Integer({
      description: 'block-exchange page size: most blocks in one response',
      default: 1_024,
      minimum: 16,
      maximum: 4_096,
    }),
    maxResponseBytes: Type.Integer({
      description: 'largest block-exchange response (bytes)',
      default: 4_194_304,
      minimum: 262_144,
      maximum: 16_777_216,
    }),
    manaCap: Type.Integer({
      description: "cap of a member account's regenerating mana (smallest units)",
      default: 10_000,
      minimum: 0,
      maximum: 1_000_000_000_000,
    }),
    manaRegenSeconds: Type.Integer({
      description: 'time for a member account to regenerate from 0 to the cap (s)',
      default: 86_400,
      minimum: 1,
      maximum: 31_536_000,
    }),
    memberAllocation: Type.Integer({
      description: 'mana each founding member starts with (smallest units)',
      default: 10_000,
      minimum: 0,
      maximum: 1_000_000_000_000,
    }),
    treasuryAllocation: Type.Integer({
      description: 'mana the treasury starts with (smallest units)',
      default: 0,
      minimum: 0,
      maximum: 1_000_000_000_000_000,
    }),
    settlementFeeBps: Type.Integer({
      description: 'fee on settlements, paid to the treasury (basis points: 100 = 1%)',
      default: 100,
      minimum: 0,
      maximum: 10_000,
    }),
    ledgerSkewMs: Type.Integer({
      description: "how far in the future a ledger block's time may lie (ms)",
      default: 30_000,
      minimum: 0,
      maximum: 3_600_000,
    }),
    recordMaxTtlMs: Type.Integer({
      description: 'longest lifetime of a member-signed record, from its creation to its expiry (ms)',
      default: 3_600_000,
      minimum: 1_000,
      maximum: 604_800_000,
    }),
  },
  { additionalProperties: false },
)

export type FederationParameters = Static<typeof FederationParametersSchema>

/** One parameter as documented: what `icn federation params` prints. */
export interface ParameterDescription {
  name: string
  description: string
  default: number
  minimum: number
  maximum: number
}

/** The rows, read from the schema's annotations (TypeBox's static types do not carry them). */
const PARAMETERS: readonly ParameterDescription[] = Object.entries(FederationParametersSchema.properties).map(
  ([name, schema]) => {
    const s = schema as unknown as Omit<ParameterDescription, 'name'>
    return { name, description: s.description, default: s.default, minimum: s.minimum, maximum: s.maximum }
  },
)
const BY_NAME = new Map(PARAMETERS.map((p) => [p.name, p]))

/** Every parameter at its default. */
export function defaultParameters(): FederationParameters {
  return Object.fromEntries(PARAMETERS.map((p) => [p.name, p.default])) as FederationParameters
}

/**
 * Fill defaults for missing keys, then check types and bounds; unknown keys are an error. Returns a new object
 * (the input is not changed). Throws InvalidParameterError naming the parameter and its bounds.
 */
export function checkParameters(input: unknown): FederationParameters {
  if (!isPlainObject(input))
    throw new InvalidParameterError(
      `federation parameters must be a map of integers, got ${describe(input)}`,
      { name: '', value: detail(input) },
    )
  const given = input as Record<string, unknown>
  for (const name of Object.keys(given)) {
    if (!BY_NAME.has(name)) throw unknownParameter(name, given[name])
  }
  const out: Record<string, number> = {}
  for (const p of PARAMETERS) {
    const value = given[p.name] === undefined ? p.default : given[p.name]
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < p.minimum || value > p.maximum)
      throw outOfBounds(p, value)
    out[p.name] = value
  }
  // The hand-written checks above give the precise message; the schema stays the single definition.
  if (!Value.Check(FederationParametersSchema, out))
    throw new InvalidParameterError('federation parameters do not match their schema', {
      name: '',
      value: out,
    })
  return out as FederationParameters
}

/**
 * Parse CLI `key=value` assignments (value a plain decimal integer, optionally negative) into a partial object;
 * bounds are checked later by `checkParameters`. Throws InvalidParameterError on an unknown key, a value that is
 * not an integer, or a key given twice.
 */
export function parseParameterAssignments(items: string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const item of items) {
    const eq = item.indexOf('=')
    if (eq <= 0)
      throw new InvalidParameterError(`parameter must be given as key=value, got ${JSON.stringify(item)}`, {
        name: eq < 0 ? item : '',
        value: item,
      })
    const name = item.slice(0, eq).trim()
    const text = item.slice(eq + 1).trim()
    const p = BY_NAME.get(name)
    if (!p) throw unknownParameter(name, text)
    if (Object.hasOwn(out, name))
      throw new InvalidParameterError(`parameter ${name} is given more than once`, {
        name,
        value: text,
        minimum: p.minimum,
        maximum: p.maximum,
      })
    const value = /^-?[0-9]{1,16}$/.test(text) ? Number(text) : Number.NaN
    if (!Number.isSafeInteger(value)) throw outOfBounds(p, text)
    out[name] = value
  }
  return out
}

/** Documentation rows: name, description, default, minimum, maximum, in schema order. */
export function describeParameters(): ParameterDescription[] {
  return PARAMETERS.map((p) => ({ ...p }))
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function unknownParameter(name: string, value: unknown): InvalidParameterError {
  return new InvalidParameterError(
    `unknown federation parameter ${JSON.stringify(name)} (known: ${PARAMETERS.map((p) => p.name).join(', ')})`,
    { name, value: detail(value) },
  )
}

function outOfBounds(p: ParameterDescription, value: unknown): InvalidParameterError {
  return new InvalidParameterError(
    `parameter ${p.name} must be an integer from ${p.minimum} to ${p.maximum}, got ${describe(value)}`,
    { name: p.name, value: detail(value), minimum: p.minimum, maximum: p.maximum },
  )
}

/** The bad value as it goes in `details`: primitives as they are (long strings cut), anything else described. */
function detail(value: unknown): string | number | boolean | null {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return value
  if (typeof value === 'string') return value.length > 40 ? `${value.slice(0, 40)}…` : value
  return describe(value)
}

/** A short, printable rendering of a bad value for messages and details. */
function describe(value: unknown): string | number | boolean | null {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return value
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)
  if (typeof value === 'bigint') return `${value}n`
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return 'an array'
  if (value instanceof Uint8Array) return 'bytes'
  return `a ${typeof value}`
}
