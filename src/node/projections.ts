import type { Federation } from '../federation/index.js'
import type { Projection } from '../state/index.js'

/** What the node's projections are built from. */
export interface NodeProjectionContext {
  /** This node's DID. */
  did: string
  /** The federation, when the node runs with a genesis. */
  federation?: Federation
}

/**
 * Every projection the node folds, in registration order. The node (`IcnNode`) and `icn dag reindex` build the
 * same list, so a reindex rebuilds exactly what the running node keeps.
 */
export function nodeProjections(_ctx: NodeProjectionContext): Projection[] {
  return []
}
