/**
 * SQL text helpers of the ledger's tables: placeholders, statement texts kept once built, and the few sizes
 * IN lists and multi-row INSERTs come in.
 */
/** `$1, $2, …` for `n` values starting after `offset`. */
export function placeholders(n: number, offset = 0): string {
  return Array.from({ length: n }, (_, i) => `$${offset + i + 1}`).join(', ')
}

/**
 * SQL texts built from a head, a count and a tail, kept once built: the statements here come in a few sizes (see
 * below), and building a 256-row VALUES list on every call cost more than running a small statement.
 */
const texts = new Map<string, string>()

export function memo(key: string, build: () => string): string {
  let text = texts.get(key)
  if (text === undefined) {
    text = build()
    // The keys are bounded (a few statements × a few sizes); the limit only guards against a caller that is not.
    if (texts.size >= 1024) texts.clear()
    texts.set(key, text)
  }
  return text
}

/** Largest IN list sent in one query. */
export const IN_CHUNK = 500

/**
 * The backends keep prepared statements by SQL text (SQLite: the last 256), so the statements here come in a few
 * sizes rather than one per count of keys or rows: an IN list is padded to the next power of two (repeating its
 * last key), and rows are inserted in chunks of these sizes (powers of two: n rows take one statement per bit of n).
 */
export function paddedLength(n: number): number {
  let size = 1
  while (size < n) size *= 2
  return size
}
export const INSERT_CHUNKS = [256, 128, 64, 32, 16, 8, 4, 2, 1]
