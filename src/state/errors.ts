import { IcnError } from '../identity/index.js'

/** A projection or module handed to `register()` is unusable: duplicate name, migrations out of order, too late. */
export class ProjectionConfigError extends IcnError {
  override readonly name = 'ProjectionConfigError'
  constructor(message: string, details?: Record<string, unknown>) {
    super('PROJECTION_INVALID', message, details ? { details } : undefined)
  }
}

/** The database holds a module's tables at a migration version newer than this icn knows: upgrade icn. */
export class StateSchemaTooNewError extends IcnError {
  override readonly name = 'StateSchemaTooNewError'
  constructor(module: string, applied: number, known: number) {
    super(
      'STATE_SCHEMA_TOO_NEW',
      `derived-state module ${module} is at schema version ${applied}, newer than this icn knows (${known}); upgrade icn`,
      { details: { module, applied, known } },
    )
  }
}

/** A projection's fold threw: it is stopped (and retries by itself); what waited on it is told so. */
export class ProjectionFaultedError extends IcnError {
  override readonly name = 'ProjectionFaultedError'
  constructor(projection: string, why: string, details: Record<string, unknown> = {}) {
    super('PROJECTION_FAULTED', `projection ${projection} is faulted: ${why}`, {
      details: { projection, ...details },
    })
  }
}

/** The projection runner is not running (stopped, or never started). */
export class RunnerStoppedError extends IcnError {
  override readonly name = 'RunnerStoppedError'
  constructor(message = 'the projection runner is not running') {
    super('RUNNER_STOPPED', message)
  }
}
