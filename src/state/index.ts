/**
 * Derived state: the projection runner folds the blocks of registered record types into module-owned SQL tables,
 * with durable cursors committed with the rows, versioned migrations per module and `reindex`. The same blocks
 * give the same tables on every node, whatever order they arrived in.
 */
export {
  ProjectionConfigError,
  ProjectionFaultedError,
  RunnerStoppedError,
  StateSchemaTooNewError,
} from './errors.js'
export {
  type FoldContext,
  type FoldOutcome,
  int,
  type Migration,
  type Projection,
  type StateModule,
  type StateReader,
  type TableSpec,
} from './projection.js'
export {
  dumpDifferences,
  ProjectionRunner,
  type ProjectionRunnerComponents,
  type ProjectionRunnerOptions,
  RUNNER_MODULE,
  type RunnerStatus,
  SCHEMA_MISMATCH,
} from './runner.js'
