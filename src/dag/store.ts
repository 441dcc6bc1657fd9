import type { Block, SignedBlock } from './block.js'
import type { CID } from './cid.js'
import type { SqlAccess } from './sql-access.js'

export interface AbortOptions {
  signal?: AbortSignal
}

/** Where a block came from; a metrics label, so keep the set small. */
export type BlockSource = 'local' | 'http' | 'import' | 'gossip' | 'sync' | 'test'

export interface PutOptions extends AbortOptions {
  source?: BlockSource
  /** The peer (libp2p peer id) the blocks came from, for commit events and logs. */
  peer?: string
  /**
   * Accept signed blocks only by these authors: checked right after decoding, before any signature work, and
   * refused with UnknownAuthorError (the network passes "is a federation node").
   */
  allowAuthor?: (did: string) => boolean
  /**
   * Called with each signed block (and its index in the batch) right after it is decoded, before any signature
   * work; throwing refuses the whole batch with that error (e.g. sync checks a reply holds the positions asked).
   */
  inspect?: (block: SignedBlock, index: number) => void
}

/** A block a commit added: stored new, or kept as evidence of an equivocation. */
export interface CommittedBlock {
  cid: CID
  bytes: Uint8Array
  status: 'stored' | 'equivocation'
  kind: 'signed' | 'raw'
  /** Signed blocks only. */
  chain?: string
  seq?: number
  author?: string
  type?: string
  /** Signed blocks only: the CIDs it links (prev first). */
  links?: CID[]
  /**
   * Signed blocks only: the block as the store decoded it while validating it, so a listener that folds it need
   * not decode its bytes again. Shared with every listener: read it, never change it.
   */
  block?: SignedBlock
}

/** What one successful `putMany` added, told to `onCommit` listeners after the transaction committed. */
export interface CommitEvent {
  source: BlockSource
  peer?: string
  blocks: CommittedBlock[]
}

/**
 * `stored`: new. `duplicate`: the store already held it. `equivocation`: a different block already holds
 * this chain position; this one is kept as evidence and does not become part of the chain.
 */
export type PutStatus = 'stored' | 'duplicate' | 'equivocation'

export interface PutResult {
  cid: CID
  status: PutStatus
}

export interface ChainHead {
  chain: string
  author: string
  seq: number
  cid: CID
}

/** Two signed blocks by one author for one chain position. */
export interface Evidence {
  chain: string
  seq: number
  /** The block the store holds at that position. */
  first: CID
  /** The conflicting block, kept so the evidence can be shown to anyone. */
  second: CID
  detectedAt: number
}

export interface StoreStats {
  blocks: number
  bytes: number
  chains: number
  pins: number
  evidence: number
}

export interface GcOptions extends AbortOptions {
  /** Extra roots kept alive besides every chain head, the pins and the evidence. */
  roots?: CID[]
}

/** What an operation showed about the backing database: it answered (`up`), or it is unavailable. */
export interface AvailabilityEvent {
  up: boolean
  /** Why it is unavailable (a StoreUnavailableError or StoreLockedError). */
  error?: unknown
}

/**
 * The one block store interface. Every put validates (size, CID, canonical encoding, signature, chain rules,
 * chunk anchoring) and is atomic: `putMany` stores all of its blocks or none.
 */
export interface BlockStore {
  readonly backend: 'sqlite' | 'postgres'
  open(options?: AbortOptions): Promise<void>
  close(): Promise<void>
  put(block: Block, options?: PutOptions): Promise<PutResult>
  putMany(blocks: Block[], options?: PutOptions): Promise<PutResult[]>
  /** Throws BlockNotFoundError when absent. */
  get(cid: CID, options?: AbortOptions): Promise<Uint8Array>
  has(cid: CID, options?: AbortOptions): Promise<boolean>
  /** Remove a block's bytes, its pin and its outgoing links; chain positions stay known. No-op when absent. */
  delete(cid: CID, options?: AbortOptions): Promise<void>
  getMany(cids: Iterable<CID>, options?: AbortOptions): AsyncGenerator<Block>
  /** Every stored block, in insertion order (a chain's blocks come after their predecessors). */
  all(options?: AbortOptions): AsyncGenerator<Block>
  /** CIDs a stored signed block links (prev and body links). */
  links(cid: CID, options?: AbortOptions): Promise<CID[]>
  chainHead(chain: string, options?: AbortOptions): Promise<ChainHead | undefined>
  chainHeads(options?: AbortOptions): Promise<ChainHead[]>
  /** The CID at a chain position, if known. */
  chainEntry(chain: string, seq: number, options?: AbortOptions): Promise<CID | undefined>
  /**
   * The blocks at positions `from`, `from + 1`, … of a chain, at most `limit`, in order, in one query; stops at
   * the first position the store does not know or whose bytes it no longer holds.
   */
  chainRange(chain: string, from: number, limit: number, options?: AbortOptions): Promise<Block[]>
  evidence(options?: AbortOptions): Promise<Evidence[]>
  pin(cid: CID, options?: AbortOptions): Promise<void>
  unpin(cid: CID, options?: AbortOptions): Promise<void>
  pins(options?: AbortOptions): Promise<CID[]>
  /**
   * Delete every block that nothing reaches through links from a root. Roots: the head of every chain the store
   * holds (the node's own and every replicated one), pins, both blocks of every evidence record, `roots`.
   */
  gc(options?: GcOptions): Promise<{ removed: number }>
  stats(options?: AbortOptions): Promise<StoreStats>
  /** Cheap round trip to the backing database; throws StoreUnavailableError if it does not answer. */
  ping(options?: AbortOptions): Promise<void>
  /** Call `listener` after every commit that added blocks (not for duplicates only); returns the unsubscribe. */
  onCommit(listener: (event: CommitEvent) => void): () => void
  /**
   * Call `listener` whenever an operation shows the database answering or unavailable (the health monitor
   * listens, so a successful write counts as health at once); returns the unsubscribe.
   */
  onAvailability(listener: (event: AvailabilityEvent) => void): () => void
  /**
   * The SQL door onto the store's own database, for derived state kept beside the blocks (the projection
   * runner). See SqlAccess; usable while the store is open.
   */
  sql(): SqlAccess
}
