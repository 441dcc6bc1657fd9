/**
 * Deadlines of the PostgreSQL store's operations: one deadline covers the wait for a pooled connection,
 * connecting and every round trip; past it the connection is destroyed, never returned to the pool.
 * `postgres.ts` turns DeadlineExceeded into StoreUnavailableError.
 */
import type pg from 'pg'

/** The operation's deadline passed; the connection it used is dropped. */
export class DeadlineExceeded extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${ms} ms`)
  }
}

/** A commit's deadline grows by a second per this many bytes it writes (a large CAR import is one commit). */
const BYTES_PER_EXTRA_SECOND = 16 * 1024 * 1024

/** The deadline of a commit that writes `bytes`, given the store's deadline of an operation. */
export function commitDeadlineMs(timeoutMs: number, bytes: number): number {
  return timeoutMs + Math.floor(bytes / BYTES_PER_EXTRA_SECOND) * 1000
}

/**
 * Run `fn` on a client of `pool` within `ms`. Past the deadline the client is destroyed (an open transaction on
 * it is never committed: the server rolls it back when the connection or `idle_in_transaction_session_timeout`
 * ends it) and the call fails with DeadlineExceeded. `live()` tells `fn` whether it may still go on. A client
 * that emitted 'error', or whose `fn` failed with an error `unfit` names, is destroyed too.
 */
export async function runWithDeadline<T>(
  pool: pg.Pool,
  ms: number,
  fn: (client: pg.PoolClient, live: () => boolean) => Promise<T>,
  unfit: (err: unknown) => boolean,
): Promise<T> {
  let expired = false
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true
      reject(new DeadlineExceeded(ms))
    }, ms)
  })
  let client: pg.PoolClient | undefined
  // Released with an error, a client is destroyed instead of going back to the pool.
  let broken: Error | undefined
  const onError = (err: unknown): void => {
    broken ??= err instanceof Error ? err : new Error(String(err))
  }
  try {
    const acquiring = pool.connect()
    try {
      client = await Promise.race([acquiring, deadline])
    } catch (err) {
      // A connection that arrives after the deadline goes back to the pool unused.
      if (expired)
        acquiring.then(
          (c) => c.release(),
          () => {},
        )
      throw err
    }
    client.on('error', onError)
    return await Promise.race([fn(client, () => !expired), deadline])
  } catch (err) {
    if (expired || unfit(err)) broken ??= err instanceof Error ? err : new Error(String(err))
    throw err
  } finally {
    clearTimeout(timer)
    if (client) {
      client.off('error', onError)
      client.release(broken)
    }
  }
}
