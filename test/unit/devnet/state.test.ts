/**
 * `devnet.json` with and without founding members: a devnet created before devnets had members still opens
 * (its nodes' `member` is null in the status); a member entry without its DID or folder is a bad state file.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Devnet, readState } from '../../../src/devnet/index.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-devnet-state-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

function node(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    dataDir: join(dir, name),
    did: `did:key:z6Mk${name}`,
    peerId: `12D3${name}`,
    apiUrl: 'http://127.0.0.1:1',
    apiKey: 'k',
    p2pAddr: '/ip4/127.0.0.1/tcp/2',
    pid: null,
    args: ['node', 'start'],
    log: join(dir, name, 'node.log'),
    ...extra,
  }
}

async function writeDevnet(nodes: Record<string, unknown>[]): Promise<void> {
  const state = {
    version: 1,
    name: 'devnet',
    createdAt: '2026-01-01T00:00:00.000Z',
    dir,
    genesis: join(dir, 'genesis.car'),
    federation: 'bafyexample',
    store: 'sqlite',
    nodes,
  }
  await writeFile(join(dir, 'devnet.json'), JSON.stringify(state))
}

describe('devnet state and members', () => {
  it('a node with a member shows it; one recorded before members existed shows member null', async () => {
    const member = { did: 'did:key:z6MkMember', dir: join(dir, 'members', 'member1') }
    await writeDevnet([node('node1', { member }), node('node2')])
    const state = await readState(dir)
    expect(state?.nodes[0]?.member).toEqual(member)
    expect(state?.nodes[1]?.member).toBeUndefined()
    const status = await (await Devnet.open(dir)).status()
    expect(status.nodes.map((n) => n.member)).toEqual([member, null])
  })

  it('a member entry without its DID or folder is a bad state file', async () => {
    for (const member of [{ did: 'did:key:z6MkMember' }, { dir: '/x' }, 'member1', null]) {
      await writeDevnet([node('node1', { member })])
      await expect(readState(dir)).rejects.toMatchObject({ code: 'DEVNET_STATE_INVALID' })
    }
  })
})
