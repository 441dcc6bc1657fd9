/**
 * Creating a devnet: the data folders and identities, one founding member per node (its own identity, homed at
 * that node), the node databases (PostgreSQL), the genesis naming every node and member, and the recorded state. Starting the processes is `Devnet`'s work (devnet.ts).
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { initDataDir, unlockIdentity, writeSecretFile } from '../node/datadir.js'
import { createMemberDir } from '../node/member-dir.js'
import type { DevnetHooks } from './devnet.js'
import { DevnetDirNotEmptyError } from './errors.js'
import { DEFAULT_DEVNET_NODES, DEVNET_FEDERATION_NAME, type DevnetSettings } from './options.js'
import { createDatabases, nodeDatabaseUrl } from './pg.js'
import { checkPortsFree, freePorts } from './ports.js'
import {
  type DevnetNodeState,
  type DevnetState,
  GENESIS_FILE,
  MEMBERS_DIR,
  NODE_LOG_FILE,
  PASSPHRASE_FILE,
  writeState,
} from './state.js'

/**
 * scrypt cost of the devnet keystores: the smallest the keystore accepts. The passphrase lies next to them in
 * `<dir>/passphrase`, so a higher cost would protect nothing and only slow down creating and starting 50 nodes.
 */
const DEVNET_KDF_N = 1024

/** Make the folders, identities, databases and genesis of a new devnet and record it (no process yet). */
export async function createDevnet(s: DevnetSettings, hooks: DevnetHooks): Promise<DevnetState> {
  const dir = s.dir
  const count = s.nodes ?? DEFAULT_DEVNET_NODES
  const names = Array.from({ length: count }, (_, i) => `node${i + 1}`)
  const clash = [PASSPHRASE_FILE, GENESIS_FILE, MEMBERS_DIR, ...names].filter((f) => existsSync(join(dir, f)))
  if (clash.length > 0) throw new DevnetDirNotEmptyError(dir, clash)
  const say = (message: string): void => hooks.onProgress?.({ kind: 'create', message })

  let ports: number[]
  if (s.basePort !== undefined) {
    ports = Array.from({ length: 2 * count }, (_, i) => s.basePort! + i)
    await checkPortsFree(ports)
  } else {
    ports = await freePorts(2 * count)
  }
  const genesis = join(dir, GENESIS_FILE)
  try {
    say(`creating a devnet of ${plural(count, 'node')} in ${dir}`)
    const passphrase = randomBytes(24).toString('base64url')
    const passphraseFile = join(dir, PASSPHRASE_FILE)
    await writeSecretFile(passphraseFile, `${passphrase}\n`)
    const dbs = s.store === 'postgres' ? names.map((name) => nodeDatabaseUrl(s.pgUrl!, name)) : undefined
    if (dbs) {
      say(`creating databases ${dbs.map((d) => d.database).join(', ')}`)
      await createDatabases(
        s.pgUrl!,
        dbs.map((d) => d.database),
      )
    }
    const inits = await Promise.all(
      names.map((name, i) =>
        initDataDir(
          {
            dataDir: join(dir, name),
            store: s.store,
            pgUrl: dbs?.[i]?.url,
            apiListen: `127.0.0.1:${ports[2 * i]}`,
          },
          passphrase,
          { N: DEVNET_KDF_N },
        ),
      ),
    )
    const dids = inits.map((r) => r.did)
    // One founding member per node, homed there, with the devnet's passphrase recorded so it opens unprompted.
    const members = await Promise.all(
      inits.map((r, i) =>
        createMemberDir(join(dir, MEMBERS_DIR, `member${i + 1}`), passphrase, {
          home: r.did,
          homeDataDir: r.dataDir,
          passphraseFile,
          kdf: { N: DEVNET_KDF_N },
        }),
      ),
    )
    const { peerIdFromDid } = await import('../network/index.js')
    const { createGenesis, writeGenesisFile } = await import('../federation/index.js')
    const founder = await unlockIdentity(join(dir, names[0]!), passphrase)
    const federation = createGenesis(founder, {
      name: DEVNET_FEDERATION_NAME,
      members: members.map((m) => m.did),
      nodes: dids,
      homes: Object.fromEntries(members.map((m, i) => [m.did, dids[i]!])),
    })
    await writeGenesisFile(genesis, federation)
    say(`federation ${federation.id} (genesis ${genesis})`)

    const base = inits.map((r, i) => {
      const peerId = peerIdFromDid(r.did).toString()
      return {
        name: names[i]!,
        dataDir: r.dataDir,
        did: r.did,
        peerId,
        apiKey: r.apiKey,
        apiPort: ports[2 * i]!,
        p2pPort: ports[2 * i + 1]!,
        p2pAddr: `/ip4/127.0.0.1/tcp/${ports[2 * i + 1]}/p2p/${peerId}`,
        pgUrl: dbs?.[i]?.url,
      }
    })
    const nodes: DevnetNodeState[] = base.map((b, i) => ({
      name: b.name,
      dataDir: b.dataDir,
      did: b.did,
      peerId: b.peerId,
      apiUrl: `http://127.0.0.1:${b.apiPort}`,
      apiKey: b.apiKey,
      p2pAddr: b.p2pAddr,
      pid: null,
      args: [
        'node',
        'start',
        '--data-dir',
        b.dataDir,
        '--genesis',
        genesis,
        '--p2p-listen',
        `/ip4/127.0.0.1/tcp/${b.p2pPort}`,
        ...base.filter((o) => o !== b).flatMap((o) => ['--bootstrap', o.p2pAddr]),
        '--api-listen',
        `127.0.0.1:${b.apiPort}`,
        '--json',
      ],
      ...(b.pgUrl ? { pgUrl: b.pgUrl } : {}),
      log: join(b.dataDir, NODE_LOG_FILE),
      member: { did: members[i]!.did, dir: members[i]!.dir },
    }))
    const state: DevnetState = {
      version: 1,
      name: DEVNET_FEDERATION_NAME,
      createdAt: new Date().toISOString(),
      dir,
      genesis,
      federation: federation.id,
      store: s.store,
      ...(s.pgUrl ? { pgUrl: s.pgUrl } : {}),
      nodes,
    }
    await writeState(state)
    return state
  } catch (err) {
    // Leave the folder as it was: nothing half-made that would block the next `up`.
    for (const name of [...names, MEMBERS_DIR]) await rm(join(dir, name), { recursive: true, force: true })
    for (const f of [PASSPHRASE_FILE, GENESIS_FILE]) await rm(join(dir, f), { force: true })
    throw err
  }
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}
