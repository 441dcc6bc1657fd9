/**
 * The node: its settings and their defaults, its data folder (identity, API key, config) and the composition
 * root that builds, starts and stops every module in order.
 */
export {
  API_KEY_FILE,
  CONFIG_FILE,
  type DataDirConfig,
  dataPaths,
  type InitResult,
  initDataDir,
  KEYSTORE_FILE,
  NotInitializedError,
  readApiKey,
  readConfig,
  readDid,
  SQLITE_FILE,
  unlockIdentity,
  writeSecretFile,
} from './datadir.js'
export { ApiListenError, IcnNode, NODE_CHAIN, type NodeModules, type NodeStatus } from './node.js'
export {
  checkOptions,
  DEFAULT_API_PORT,
  defaultOptions,
  InvalidOptionError,
  type NodeOptions,
  parseListen,
  redactUrl,
  type StoreKind,
} from './options.js'
export { type NodeProjectionContext, nodeProjections } from './projections.js'
