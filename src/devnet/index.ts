/**
 * Devnet: a whole federation on one machine. `Devnet.up` creates a data folder per node and one founding member
 * per node (`members/memberK`, homed at node K), a genesis naming them all, and starts each node as a detached
 * `icn node start` process on 127.0.0.1, bootstrapped to all the others, then waits until every node is ready
 * and connected; `status`, `kill`, `restart` and `down` manage it afterwards
 * from the state recorded in `<dir>/devnet.json`. The `icn devnet` command is a thin layer over this class, so
 * tests and benchmarks can drive a devnet in-process.
 */

export { type DemoOptions, type DemoParty, type DemoSummary, type DemoTransfer, runDemo } from './demo.js'
export {
  Devnet,
  type DevnetDownResult,
  type DevnetHooks,
  type DevnetNodeStatus,
  type DevnetProgress,
  type DevnetStatus,
  type DevnetUpOptions,
} from './devnet.js'
export {
  DevnetBusyError,
  DevnetDirNotEmptyError,
  DevnetNotFoundError,
  DevnetRunningError,
  DevnetStateError,
  DevnetStopError,
  DevnetTimeoutError,
  MonitorBinaryMissingError,
  MonitorStartError,
  NodeExitedError,
  NodeNotRunningError,
  PortInUseError,
  UnknownNodeError,
} from './errors.js'
export {
  type DevnetMonitorState,
  findMonitorBinaries,
  MONITOR_PROGRAMS,
  type MonitorServiceState,
  type MonitorServiceStatus,
  renderAlertmanagerConfig,
  renderPrometheusConfig,
  renderTargets,
} from './monitor.js'
export {
  checkDevnetSettings,
  DEFAULT_DEVNET_NODES,
  DEFAULT_DEVNET_TIMEOUT_S,
  DEVNET_FEDERATION_NAME,
  type DevnetSettings,
  defaultDevnetDir,
  MAX_DEVNET_NODES,
} from './options.js'
export { nodeRunning } from './process.js'
export {
  type DevnetMemberState,
  type DevnetNodeState,
  type DevnetState,
  MEMBERS_DIR,
  readState,
  STATE_FILE,
} from './state.js'
