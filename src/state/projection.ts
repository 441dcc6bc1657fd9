import type { TSchema } from 'typebox'
import type { CID, SignedBlock } from '../dag/index.js'
import type { SqlQueries, SqlRow } from '../dag/sql-access.js'

/**
 * The contract between the projection runner (this module) and the modules that derive state from blocks
 * (economics now; mesh, reputation and governance next). A module registers one or more projections; the
 * runner owns the order, the transactions and the cursors, the module owns its tables and its fold.
 *
 * Determinism (the rule every fold must keep): the rows a fold writes depend only on the blocks folded, never
 * on the reader's clock, the process's history or the order in which chains arrived. Within one chain blocks
 * fold in chain order (seq 0, 1, 2, …). Across chains nothing is ordered, so whatever one chain's block
 * contributes to rows that other chains' blocks also touch must commute (sums, set inserts keyed by content).
 */

/** One versioned schema change of a module's tables; applied once, in order, inside a transaction. */
export interface Migration {
  /** 1, 2, 3, … per module, never reused. */
  version: number
  /** Human description, logged when applied. */
  description: string
  /** DDL for SQLite. */
  sqlite: string
  /** DDL for PostgreSQL. */
  postgres: string
}

/** A module that owns tables: its name (a namespace for its migrations) and its migrations. */
export interface StateModule {
  /** e.g. `economics`; its migrations are tracked under this name. */
  name: string
  migrations: Migration[]
  /** Every table the module owns, for `reindex` (cleared before refolding) and table-by-table comparison. */
  tables: TableSpec[]
}

export interface TableSpec {
  name: string
  /** Columns that order a full dump of the table deterministically (its primary key). */
  orderBy: string[]
}

/** What a fold made of a block. */
export type FoldOutcome =
  /** Its rows were written. */
  | { status: 'applied' }
  /** A valid signed block whose content breaks the module's rules: stored, not applied, counted. Deterministic. */
  | { status: 'rejected'; code: string; reason: string }
  /**
   * Not yet: the block may only fold once the reader's clock reaches `untilMs` (a ledger block dated further
   * in the future than the skew bound). The chain's cursor stays before it; the runner retries then. Must not
   * depend on anything but the block and `untilMs` vs the clock.
   */
  | { status: 'deferred'; untilMs: number; reason: string }

export interface FoldContext {
  /** The transaction the fold writes in; the runner commits the cursor in it too. */
  tx: SqlQueries
  /** The block's CID. */
  cid: CID
  /** The decoded signed block (its body already checked against the record type's schema). */
  block: SignedBlock
  /** The reader's clock (ms): only for `deferred` decisions. */
  now: number
  /**
   * Whether the block was written by this node (its own chain). Never let it change what a block does: the same
   * blocks must give the same rows on every node, its author included (the ledger checks every signature).
   */
  own: boolean
  /**
   * Run `fn` once the transaction holding this fold has committed (never if it rolls back): for telling the
   * world (events, metrics) about what is now true. Errors thrown by `fn` are logged and dropped.
   */
  afterCommit(fn: () => void): void
  /**
   * Run `fn` once every block of this transaction is folded, before the transaction commits (never if an
   * earlier fold threw): for writing, in a few statements, what the folds of several blocks gathered. A fold
   * that defers its writes this way must read its own unwritten rows from what it gathered, not the tables.
   * A throw is a fault, as in `fold`.
   */
  beforeCommit(fn: () => Promise<void>): void
}

export interface Projection {
  /** Unique, e.g. `economics.ledger`. Cursors are kept per (projection, chain). */
  name: string
  /** Bump when the fold's meaning changes: the runner then rebuilds this projection's module from the blocks. */
  version: number
  /** The module whose tables it writes. */
  module: StateModule
  /** Which chains it folds, by chain id (e.g. every `<node DID>/ledger`). Blocks of other chains are never read. */
  chains(chain: string): boolean
  /** Record types it folds, each with its body schema. Blocks of other types on its chains only move the cursor. */
  recordTypes: Record<string, TSchema>
  /** Seed rows after the tables are created or cleared (e.g. genesis accounts). Runs in a transaction. */
  init?(tx: SqlQueries): Promise<void>
  /**
   * Fold one block whose type is in `recordTypes` and whose body fits its schema. Writes through `ctx.tx` only.
   * Throwing (anything but returning an outcome) is a fault, not a rejection: the transaction rolls back, the
   * projection stops and `/ready` reports it.
   */
  fold(ctx: FoldContext): Promise<FoldOutcome>
}

/** Read-only access for a module's queries (API reads): never inside a fold's transaction. */
export type StateReader = Pick<SqlQueries, 'query'>

/** A row's integer column as a number (PostgreSQL BIGINT comes back as text). */
export function int(row: SqlRow, column: string): number {
  const v = row[column]
  if (v === null || v === undefined) return 0
  return typeof v === 'number' ? v : Number(v)
}
