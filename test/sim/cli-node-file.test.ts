/**
 * A running node records where it really listens (`<data-dir>/node.json`), and `icn … --data-dir D` finds it
 * there before config.json: started with another --api-listen than init was given, while another node holds the
 * port of config.json, the CLI still talks to the node of D. A clean stop removes the file; a stale one left by
 * a dead process is ignored.
 */
import { spawnSync } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { peerIdFromDid } from '../../src/network/peer-id.js'
import {
  freePort,
  initDataDir,
  killAll,
  type RunningNode,
  removeTempDirs,
  runCli,
  startNode,
  tempDir,
} from '../helpers/process.js'

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

describe('node.json', () => {
  it('icn node info / dag put --data-dir D reach the node started from D, wherever it listens', async () => {
    const work = await tempDir()
    const dir = join(work, 'mine')
    const configured = await freePort()
    const mine = await initDataDir(dir, ['--api-listen', `127.0.0.1:${configured}`])
    // Another node sits on the port in D's config.json: the one the CLI used to reach by mistake.
    const other = await startNode(['--dev'], { apiListen: `127.0.0.1:${configured}`, env: { TMPDIR: work } })
    const node: RunningNode = await startNode(['--data-dir', dir], { apiListen: '127.0.0.1:0' })
    expect(node.info.api).not.toBe(other.info.api)

    const recorded = JSON.parse(await readFile(join(dir, 'node.json'), 'utf8')) as Record<string, unknown>
    expect(recorded).toMatchObject({ version: 1, pid: node.proc.pid, did: mine.did, api: node.info.api })
    expect((await stat(join(dir, 'node.json'))).mode & 0o777).toBe(0o600)

    const info = await runCli(['node', 'info', '--data-dir', dir])
    expect(info.code, info.stderr).toBe(0)
    expect(info.stdout).toContain(`DID      ${mine.did}`)
    expect(info.stdout).toMatch(/^peer id {2}12D3KooW/m)
    const put = await runCli(['dag', 'put', '--data-dir', dir, '--value', '{"to":"mine"}'])
    expect(put.code, put.stderr).toBe(0)
    const cid = put.stdout.trim()
    expect((await fetch(`${node.info.api}/v1/dag/blocks/${cid}`)).status).toBe(200)

    // A clean stop removes the record.
    expect(await node.stop('SIGTERM')).toMatchObject({ code: 0 })
    await expect(stat(join(dir, 'node.json'))).rejects.toThrow()

    // A record left by a process that is gone (a crash) is ignored: the CLI falls back to config.json.
    const dead = spawnSync(process.execPath, ['-e', '']).pid
    await writeFile(join(dir, 'node.json'), JSON.stringify({ ...recorded, pid: dead, api: node.info.api }), {
      mode: 0o600,
    })
    const fallback = await runCli(['node', 'info', '--data-dir', dir, '--json'])
    expect(fallback.code, fallback.stderr).toBe(0)
    expect(JSON.parse(fallback.stdout)).toMatchObject({ did: other.info.did })
  }, 60_000)

  it('icn id show prints the peer id the node will have, without starting it', async () => {
    const dir = join(await tempDir(), 'd')
    const { did } = await initDataDir(dir)
    const show = await runCli(['id', 'show', '--data-dir', dir, '--json'], {
      env: { ICN_PASSPHRASE: undefined },
    })
    expect(show.code, show.stderr).toBe(0)
    const shown = JSON.parse(show.stdout) as { did: string; peerId: string }
    expect(shown.did).toBe(did)
    expect(shown.peerId).toBe(peerIdFromDid(did).toString())
    const node = await startNode(['--data-dir', dir])
    const info = (await (await fetch(`${node.info.api}/v1/node`)).json()) as { did: string }
    expect(info.did).toBe(did)
    const text = await runCli(['id', 'show', '--data-dir', dir])
    expect(text.stdout).toContain(`peer id  ${shown.peerId}`)
    const nodeInfo = await runCli(['node', 'info', '--data-dir', dir])
    expect(nodeInfo.stdout).toContain(`peer id  ${shown.peerId}`)
    await node.stop()
  }, 40_000)
})
