import {
  checkValueLimits,
  InvalidUnicodeError,
  MAX_SAFE_INTEGER,
  MAX_VALUE_DEPTH,
  UnsafeIntegerError,
  ValueTooDeepError,
} from '../dag/limits.js'
import { InvalidJsonError } from './errors.js'

export { InvalidJsonError }

/** Levels a JSON request body may nest: its own object, then a value of at most MAX_VALUE_DEPTH levels. */
export const MAX_BODY_DEPTH = MAX_VALUE_DEPTH + 1

const utf8 = new TextDecoder('utf-8', { fatal: true })
const SAFE_DIGITS = String(MAX_SAFE_INTEGER)

export interface ParseJsonOptions {
  /** Levels of arrays and objects allowed. Default MAX_BODY_DEPTH (an API body around a value). */
  maxDepth?: number
  /** Names the input in error messages. Default "the JSON body". */
  what?: string
}

/**
 * Parse JSON bytes so that nothing changes silently, or throw a typed error (all are 400s):
 * - bytes that are not UTF-8 → INVALID_UNICODE (never replaced by U+FFFD); a leading BOM is skipped;
 * - arrays and objects nested deeper than `maxDepth` → VALUE_TOO_DEEP, found by a scan of the text, without
 *   recursion, before anything is parsed;
 * - an integer literal (no fraction, no exponent) beyond ±(2^53 − 1) → UNSAFE_INTEGER, found on the text, since
 *   JSON.parse would already have rounded it;
 * - a string or key with a lone surrogate (`"\ud800"`) → INVALID_UNICODE;
 * - anything JSON.parse refuses (including NaN, Infinity) → INVALID_JSON.
 * Numbers written with a fraction or an exponent are read as JSON.parse reads them: the nearest double.
 */
export function parseJsonBody(raw: Uint8Array, opts: ParseJsonOptions = {}): unknown {
  const what = opts.what ?? 'the JSON body'
  const maxDepth = opts.maxDepth ?? MAX_BODY_DEPTH
  let text: string
  try {
    text = utf8.decode(raw)
  } catch {
    throw new InvalidUnicodeError(`${what} is not valid UTF-8`)
  }
  scanJsonText(text, maxDepth, what)
  if (text.trim() === '') throw new InvalidJsonError(`${what} is empty`)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new InvalidJsonError(`${what} is not valid JSON: ${(err as Error).message}`)
  }
  checkValueLimits(value, maxDepth, what)
  return value
}

/** `parseJsonBody` for a bare value (the CLI's `dag put`): at most MAX_VALUE_DEPTH levels. */
export function parseJsonValue(raw: Uint8Array): unknown {
  return parseJsonBody(raw, { maxDepth: MAX_VALUE_DEPTH, what: 'the value' })
}

/** One pass over JSON text, outside strings: the nesting depth, and every integer literal's magnitude. */
function scanJsonText(text: string, maxDepth: number, what: string): void {
  let depth = 0
  let i = 0
  const n = text.length
  while (i < n) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      // A string: skip to its closing quote, stepping over escapes.
      i++
      while (i < n) {
        const s = text.charCodeAt(i)
        if (s === 0x5c) i += 2
        else if (s === 0x22) break
        else i++
      }
      i++
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) throw new ValueTooDeepError(what, maxDepth)
      i++
    } else if (c === 0x5d || c === 0x7d) {
      depth--
      i++
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const start = i
      let integer = true
      while (i < n) {
        const d = text.charCodeAt(i)
        if (d === 0x2e || d === 0x65 || d === 0x45) integer = false
        else if (!(d === 0x2d || d === 0x2b || (d >= 0x30 && d <= 0x39))) break
        i++
      }
      if (integer) checkIntegerLiteral(text.slice(start, i), what)
    } else i++
  }
}

function checkIntegerLiteral(token: string, what: string): void {
  const digits = token.replace(/^-/, '').replace(/^0+(?=\d)/, '')
  if (digits.length > SAFE_DIGITS.length || (digits.length === SAFE_DIGITS.length && digits > SAFE_DIGITS))
    throw new UnsafeIntegerError(what, token)
}
