/** The node runs its projection runner: started with the store, reported by /ready, stopped before the store. */
import { expect, it } from 'vitest'
import { routes } from '../../src/api/index.js'
import { startApiNode } from '../helpers/node.js'

it('the node starts its projection runner, /ready reports it, and stop stops it before the store', async () => {
  const t = await startApiNode('state-test-key', 'icn-state-e2e-')
  try {
    expect(t.node.state.lifecycle).toBe('running')
    const ready = await t.client.call(routes.ready)
    expect(ready).toMatchObject({ ready: true, components: { projections: { ready: true } } })
    // The runner's own tables exist in the node's store.
    const rows = await t.node.store
      .sql()
      .query('SELECT module, version FROM state_migrations ORDER BY module')
    expect(rows).toEqual([{ module: 'state', version: 1 }])
  } finally {
    await t.stop()
  }
  expect(t.node.state.lifecycle).toBe('stopped')
  expect(t.node.state.status().ready).toBe(false)
})
