/**
 * Exit statuses as a user meets them, one table: bad input (malformed or inconsistent flags, an input file that
 * is missing, a passphrase unfit for a new keystore, a database that does not exist) is 2 everywhere, with the
 * error's code on stderr and nothing on stdout; an operation tried and failed is 1.
 */
import { execFileSync } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, rewritePgUrl, TEST_PG_URL } from '../helpers/pg.js'
import {
  childEnv,
  type EnvChanges,
  ICN_BIN,
  initDataDir,
  killAll,
  REPO_ROOT,
  removeTempDirs,
  runCli,
  tempDir,
} from '../helpers/process.js'

let dir: string
let work: string

beforeAll(async () => {
  work = await tempDir()
  dir = join(work, 'data')
  await initDataDir(dir)
})

afterAll(async () => {
  await killAll()
  await removeTempDirs()
})

interface Case {
  name: string
  args: () => string[]
  env?: EnvChanges
  exit: 0 | 1 | 2
  /** Text stderr must contain (the error's code, and what to fix). */
  says: string[]
}

// ICN_PASSPHRASE is removed where the check must come before the passphrase is asked for: the error is then the
// bad flag, never PASSPHRASE_REQUIRED.
const noPassphrase = { ICN_PASSPHRASE: undefined }
const cases: Case[] = [
  {
    name: '--log-level loud',
    args: () => ['node', 'start', '--data-dir', dir, '--log-level', 'loud', '--api-listen', '127.0.0.1:0'],
    env: noPassphrase,
    exit: 2,
    says: ['INVALID_OPTION', '--log-level', 'loud', 'debug'],
  },
  {
    name: 'ICN_LOG_LEVEL=loud',
    args: () => ['node', 'start', '--data-dir', dir, '--api-listen', '127.0.0.1:0'],
    env: { ...noPassphrase, ICN_LOG_LEVEL: 'loud' },
    exit: 2,
    says: ['INVALID_OPTION', 'ICN_LOG_LEVEL'],
  },
  {
    name: 'node start --genesis /nonexistent',
    args: () => [
      'node',
      'start',
      '--data-dir',
      dir,
      '--genesis',
      '/nonexistent',
      '--api-listen',
      '127.0.0.1:0',
    ],
    env: noPassphrase,
    exit: 2,
    says: ['GENESIS_NOT_FOUND', '/nonexistent'],
  },
  {
    name: 'node start --dev --genesis /nonexistent',
    args: () => ['node', 'start', '--dev', '--genesis', '/nonexistent', '--api-listen', '127.0.0.1:0'],
    exit: 2,
    says: ['GENESIS_NOT_FOUND'],
  },
  {
    name: 'federation show /nonexistent',
    args: () => ['federation', 'show', '/nonexistent'],
    exit: 2,
    says: ['GENESIS_NOT_FOUND'],
  },
  {
    name: 'init with a 5-character passphrase',
    args: () => ['init', '--data-dir', join(work, 'short')],
    env: { ICN_PASSPHRASE: '12345' },
    exit: 2,
    says: ['PASSPHRASE_TOO_SHORT', 'at least 8 characters'],
  },
  {
    name: 'init --passphrase-file /nonexistent',
    args: () => ['init', '--data-dir', join(work, 'nofile'), '--passphrase-file', '/nonexistent'],
    exit: 2,
    says: ['PASSPHRASE_FILE_UNREADABLE'],
  },
  {
    name: 'init --store postgres without --pg-url',
    args: () => ['init', '--data-dir', join(work, 'pg1'), '--store', 'postgres'],
    exit: 2,
    says: ['INVALID_OPTION', '--pg-url'],
  },
  {
    name: 'init --store postgres with a database that does not exist',
    args: () => [
      'init',
      '--data-dir',
      join(work, 'pg2'),
      '--store',
      'postgres',
      '--pg-url',
      rewritePgUrl(TEST_PG_URL, { database: 'icn_no_such_database' }),
    ],
    env: noPassphrase,
    exit: 2,
    says: ['DATABASE_NOT_FOUND', 'icn_no_such_database', 'createdb'],
  },
  {
    name: 'init --store postgres with no server',
    args: () => [
      'init',
      '--data-dir',
      join(work, 'pg3'),
      '--store',
      'postgres',
      '--pg-url',
      'postgres://u@127.0.0.1:1/x',
    ],
    exit: 1,
    says: ['DATABASE_UNREACHABLE'],
  },
  {
    name: 'node start --api-listen nonsense',
    args: () => ['node', 'start', '--data-dir', dir, '--api-listen', 'nonsense'],
    env: noPassphrase,
    exit: 2,
    says: ['INVALID_OPTION', 'nonsense'],
  },
  {
    name: 'unknown option',
    args: () => ['node', 'start', '--bogus'],
    exit: 2,
    says: ["unknown option '--bogus'"],
  },
  { name: 'unknown command', args: () => ['bogus'], exit: 2, says: ["unknown command 'bogus'"] },
  {
    name: 'missing argument',
    args: () => ['dag', 'get'],
    exit: 2,
    says: ["missing required argument 'cid'"],
  },
  {
    name: 'option argument missing',
    args: () => ['dag', 'put', '--value'],
    exit: 2,
    says: ["option '--value <json>' argument missing"],
  },
  {
    name: 'node info --api ftp://x',
    args: () => ['node', 'info', '--api', 'ftp://x'],
    exit: 2,
    says: ['--api'],
  },
  {
    name: 'devnet demo --nodes 1',
    args: () => ['devnet', 'demo', '--nodes', '1'],
    exit: 2,
    says: ['--nodes must be 2 to'],
  },
  {
    name: 'devnet up --timeout 0',
    args: () => ['devnet', 'up', '--timeout', '0', '--dir', join(work, 'devnet')],
    exit: 2,
    says: ['positive number of seconds'],
  },
  {
    name: 'a wrong passphrase (the check ran and failed)',
    args: () => ['id', 'sign', '--data-dir', dir, '--namespace', 'file', '--message-hex', '00'],
    env: { ICN_PASSPHRASE: 'not the passphrase' },
    exit: 1,
    says: ['WRONG_PASSPHRASE'],
  },
]

describe('icn exit statuses', () => {
  it.each(cases)('$name: exit $exit', async (c) => {
    const r = await runCli(c.args(), { env: c.env })
    expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(c.exit)
    for (const text of c.says) expect(r.stderr).toContain(text)
    expect(r.stdout).toBe('')
  })

  it('nothing is created in a data folder that init refused', async () => {
    const made = await readdir(work)
    for (const name of ['short', 'nofile', 'pg1', 'pg2', 'pg3']) expect(made).not.toContain(name)
  })

  it('the database check at init passes for one that exists', async () => {
    const db = await createTestDatabase()
    try {
      await initDataDir(join(work, 'pg-ok'), ['--store', 'postgres', '--pg-url', db.url])
    } finally {
      await db.drop()
    }
  })

  // The two answers of a new passphrase only differ at a terminal's prompt: `script` gives the CLI one.
  const hasScript = (() => {
    try {
      execFileSync('script', ['--version'], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  })()
  it.skipIf(!hasScript)(
    'init at a terminal with two different answers: PASSPHRASE_MISMATCH, exit 2',
    async () => {
      const target = join(work, 'mismatch')
      const cmd = [process.execPath, ICN_BIN, 'init', '--data-dir', target].map((a) => `'${a}'`).join(' ')
      const env = childEnv({ ICN_PASSPHRASE: undefined })
      let code = 0
      let output = ''
      try {
        output = execFileSync('script', ['-qec', cmd, '/dev/null'], {
          input: 'first passphrase\nsecond passphrase\n',
          env,
          cwd: REPO_ROOT,
          encoding: 'utf8',
          timeout: 20_000,
        })
      } catch (err) {
        const e = err as { status: number; stdout: string }
        code = e.status
        output = e.stdout
      }
      expect(code, output).toBe(2)
      expect(output).toContain('PASSPHRASE_MISMATCH')
      expect(await readdir(work)).not.toContain('mismatch')
    },
  )
})
