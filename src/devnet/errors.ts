import { IcnError } from '../identity/index.js'

/** There is no devnet state file (`devnet.json`) in the folder. */
export class DevnetNotFoundError extends IcnError {
  override readonly name = 'DevnetNotFoundError'
  constructor(dir: string) {
    super('DEVNET_NOT_FOUND', `no devnet in ${dir}: start one with \`icn devnet up --dir ${dir}\``, {
      details: { dir },
    })
  }
}

/** The state file exists but cannot be read or is not a devnet state. */
export class DevnetStateError extends IcnError {
  override readonly name = 'DevnetStateError'
  constructor(path: string, why: string) {
    super('DEVNET_STATE_INVALID', `cannot use the devnet state ${path}: ${why}`, { details: { path } })
  }
}

/** `up` found nodes of the devnet recorded in the folder still running. */
export class DevnetRunningError extends IcnError {
  override readonly name = 'DevnetRunningError'
  constructor(dir: string, running: string[]) {
    super(
      'DEVNET_RUNNING',
      `the devnet in ${dir} is still running (${running.join(', ')}): see \`icn devnet status --dir ${dir}\`, ` +
        `or stop it with \`icn devnet down --dir ${dir}\` first`,
      { details: { dir, running } },
    )
  }
}

/** The folder holds files a new devnet would overwrite, but no devnet state. */
export class DevnetDirNotEmptyError extends IcnError {
  override readonly name = 'DevnetDirNotEmptyError'
  constructor(dir: string, entries: string[]) {
    super(
      'DEVNET_DIR_NOT_EMPTY',
      `${dir} already holds ${entries.join(', ')} but no devnet.json: choose another --dir or remove them`,
      { details: { dir, entries } },
    )
  }
}

/** Another `icn devnet` command is changing the same devnet right now. */
export class DevnetBusyError extends IcnError {
  override readonly name = 'DevnetBusyError'
  constructor(dir: string, pid: number) {
    super(
      'DEVNET_BUSY',
      `another icn devnet command (pid ${pid}) is working on ${dir}; try again when it is done`,
      {
        details: { dir, pid },
      },
    )
  }
}

/** No node of that name in the devnet (a usage error). */
export class UnknownNodeError extends IcnError {
  override readonly name = 'UnknownNodeError'
  constructor(name: string, known: string[]) {
    super('UNKNOWN_NODE', `no node ${JSON.stringify(name)} in this devnet (nodes: ${known.join(', ')})`, {
      details: { node: name, known },
    })
  }
}

/** The node named is not running, so there is nothing to kill. */
export class NodeNotRunningError extends IcnError {
  override readonly name = 'NodeNotRunningError'
  constructor(name: string) {
    super('NODE_NOT_RUNNING', `${name} is not running`, { details: { node: name } })
  }
}

/** A port chosen with --base-port is taken. */
export class PortInUseError extends IcnError {
  override readonly name = 'PortInUseError'
  constructor(port: number) {
    super('PORT_IN_USE', `port ${port} on 127.0.0.1 is in use: choose another --base-port or leave it out`, {
      details: { port },
    })
  }
}

/** A node process exited while `up` or `restart` waited for it; the message carries its log tail. */
export class NodeExitedError extends IcnError {
  override readonly name = 'NodeExitedError'
  constructor(
    readonly node: string,
    message: string,
  ) {
    super('NODE_EXITED', message, { details: { node } })
  }
}

/** The nodes were not all ready and connected in time; the message says which and carries their log tails. */
export class DevnetTimeoutError extends IcnError {
  override readonly name = 'DevnetTimeoutError'
  constructor(
    readonly pending: string[],
    message: string,
  ) {
    super('DEVNET_TIMEOUT', message, { details: { pending } })
  }
}

/** Some node processes were still alive after SIGTERM and SIGKILL. */
export class DevnetStopError extends IcnError {
  override readonly name = 'DevnetStopError'
  constructor(left: { name: string; pid: number }[]) {
    super(
      'DEVNET_STOP_FAILED',
      `these node processes did not exit: ${left.map((n) => `${n.name} (pid ${n.pid})`).join(', ')}`,
      { details: { left } },
    )
  }
}

/** `--monitor` needs Prometheus and Alertmanager, and one of their programs is not installed. */
export class MonitorBinaryMissingError extends IcnError {
  override readonly name = 'MonitorBinaryMissingError'
  constructor(missing: { program: string; debianPackage: string }[]) {
    const packages = missing.map((m) => m.debianPackage).join(' ')
    super(
      'MONITOR_BINARY_MISSING',
      `--monitor needs ${missing.map((m) => m.program).join(' and ')}, which ${missing.length === 1 ? 'is' : 'are'} ` +
        `not on PATH: install the Debian package${missing.length === 1 ? '' : 's'} ` +
        `(\`apt-get install -y ${packages}\`) or leave out --monitor. Nothing was started.`,
      { details: { missing } },
    )
  }
}

/** Prometheus or Alertmanager exited, or did not answer /-/ready, while the devnet started it. */
export class MonitorStartError extends IcnError {
  override readonly name = 'MonitorStartError'
  constructor(
    readonly service: 'prometheus' | 'alertmanager',
    message: string,
  ) {
    super('MONITOR_START_FAILED', message, { details: { service } })
  }
}
