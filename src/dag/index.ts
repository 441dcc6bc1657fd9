/**
 * The DAG: signed, content-addressed blocks (DAG-CBOR, CIDv1 sha2-256) on single-writer chains, raw chunks
 * for large values, the BlockStore interface with its SQLite and PostgreSQL backends, pins, garbage
 * collection and CAR import/export. Every byte entering a store is validated here.
 */
export { AbstractBlockStore, isInputError, type StoreComponents } from './base.js'
export {
  BLOCK_VERSION,
  type Block,
  chainId,
  chainWriter,
  collectLinks,
  createRawBlock,
  createSignedBlock,
  decodeSignedBlock,
  MAX_BLOCK_BYTES,
  type PrevalidatedBlock,
  prevalidateBlock,
  type SignedBlock,
  signatureError,
  type UnsignedBlock,
  type ValidatedBlock,
  validateBlock,
} from './block.js'
export {
  DEFAULT_MAX_CAR_BYTES,
  type ExportCarOptions,
  type ExportCarResult,
  exportCar,
  type ImportCarOptions,
  type ImportCarResult,
  importCar,
} from './car.js'
export {
  type AppendResult,
  ChainWriter,
  type ChainWriterComponents,
  type ChainWriterOptions,
} from './chain-writer.js'
export { CID, checkCid, cidFor, DAG_CBOR, parseCid, RAW } from './cid.js'
export * from './errors.js'
export {
  type StoreHealthComponents,
  StoreHealthMonitor,
  type StoreHealthOptions,
  type StoreHealthStatus,
  type TimerClock,
} from './health.js'
export {
  checkCborLimits,
  checkValueLimits,
  InvalidUnicodeError,
  isWellFormed,
  MAX_BLOCK_DEPTH,
  MAX_SAFE_INTEGER,
  MAX_VALUE_DEPTH,
  UnsafeIntegerError,
  ValueTooDeepError,
} from './limits.js'
export { chainsOf, headPositions, lookupsFor, planBatch, positionKey } from './plan.js'
// PostgresBlockStore is imported from './postgres.js' itself, not from here: loading the dag module (every node
// and most commands) must not load the pg driver, which a node on SQLite never uses.
export type { PostgresStoreOptions } from './postgres.js'
export { describePgUrl, isConnectionError } from './postgres-sql.js'
export type { SqlAccess, SqlQueries, SqlRow } from './sql-access.js'
export { SqliteBlockStore, type SqliteStoreOptions } from './sqlite.js'
export { sqliteStatement, toSqlitePlaceholders } from './sqlite-access.js'
export type * from './store.js'
export {
  CHUNK_BYTES,
  decodeValue,
  encodeValue,
  INLINE_VALUE_BYTES,
  MAX_VALUE_BYTES,
  VALUE_RECORD_TYPE,
  type ValueBody,
} from './value.js'
export { type BadBlock, type VerifyStoreOptions, type VerifyStoreResult, verifyStore } from './verify.js'
