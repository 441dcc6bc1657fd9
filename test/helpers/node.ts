/**
 * Test fixture: one node in this process (no federation), on a fresh data folder with a throwaway identity, its
 * real HTTP API on a free 127.0.0.1 port. `stop()` stops it and removes the folder.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ApiClient } from '../../src/api/index.js'
import { Signer } from '../../src/identity/index.js'
import { defaultOptions, IcnNode } from '../../src/node/index.js'
import { silentLogger } from '../../src/observability/index.js'

export interface ApiNode {
  node: IcnNode
  /** The API's TCP port, for raw-socket requests. */
  port: number
  /** A client holding the API key. */
  client: ApiClient
  stop(): Promise<void>
}

export async function startApiNode(apiKey: string, prefix = 'icn-api-'): Promise<ApiNode> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const node = await IcnNode.create(
    { ...defaultOptions, dataDir: dir, apiListen: '127.0.0.1:0' },
    { signer: Signer.generate(), apiKey, logger: silentLogger() },
  )
  try {
    await node.start()
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  return {
    node,
    port: Number(new URL(node.apiUrl).port),
    client: new ApiClient({ baseUrl: node.apiUrl, apiKey }),
    stop: async () => {
      await node.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
