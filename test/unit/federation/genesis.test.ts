import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CarWriter } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type Block,
  chainId,
  cidFor,
  createRawBlock,
  createSignedBlock,
  DAG_CBOR,
  decodeSignedBlock,
} from '../../../src/dag/index.js'
import {
  createGenesis,
  defaultParameters,
  type Federation,
  federationSummary,
  GENESIS_CHAIN,
  GENESIS_TYPE,
  GenesisExistsError,
  GenesisNotFoundError,
  InvalidGenesisError,
  memberHome,
  parseGenesis,
  readGenesisFile,
  writeGenesisFile,
} from '../../../src/federation/index.js'
import { didFromPublicKey, Signer } from '../../../src/identity/index.js'

const founder = Signer.generate()
const alice = Signer.generate().did
const bob = Signer.generate().did
const TS = 1_700_000_000_000

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'icn-federation-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

function genesis(over: Partial<Parameters<typeof createGenesis>[1]> = {}): Federation {
  return createGenesis(founder, {
    name: 'Test Federation',
    members: [alice],
    nodes: [founder.did, bob],
    ts: TS,
    ...over,
  })
}

/** A correctly signed genesis-like block with any fields or body changed. */
function signedRecord(
  over: { type?: string; chain?: string; seq?: number; prev?: Block['cid'] | null; body?: unknown } = {},
  by: Signer = founder,
): Block {
  const b = createSignedBlock(by, {
    type: over.type ?? GENESIS_TYPE,
    chain: over.chain ?? chainId(by.did, GENESIS_CHAIN),
    seq: over.seq ?? 0,
    prev: over.prev === undefined ? null : over.prev,
    ts: TS,
    body: over.body ?? { name: 'F', members: [alice], nodes: [founder.did], parameters: defaultParameters() },
  })
  return { cid: b.cid, bytes: b.bytes }
}

/** The error `fn` throws (sync or async), failing the test if it does not throw. */
async function errorOf(fn: () => unknown): Promise<Error & { code: string; cause?: unknown }> {
  try {
    await fn()
  } catch (err) {
    return err as Error & { code: string }
  }
  throw new Error('expected an error')
}

async function genesisCode(block: Block): Promise<{ code: string; message: string; cause?: string }> {
  const err = await errorOf(() => parseGenesis(block))
  expect(err).toBeInstanceOf(InvalidGenesisError)
  return { code: err.code, message: err.message, cause: (err.cause as { code?: string } | undefined)?.code }
}

/** A federation with its CIDs and bytes as strings, to compare whatever buffer types a decoder produced. */
function plain(f: Federation): Record<string, unknown> {
  return {
    ...f,
    cid: f.cid.toString(),
    genesis: { cid: f.genesis.cid.toString(), bytes: Buffer.from(f.genesis.bytes).toString('hex') },
  }
}

async function carFile(name: string, roots: Block['cid'][], blocks: Block[]): Promise<string> {
  const { writer, out } = CarWriter.create(roots)
  const parts: Uint8Array[] = []
  const collected = (async () => {
    for await (const p of out) parts.push(p)
  })()
  for (const b of blocks) await writer.put(b)
  await writer.close()
  await collected
  const path = join(dir, name)
  await writeFile(path, Buffer.concat(parts))
  return path
}

describe('createGenesis and parseGenesis', () => {
  it('signs seq 0 of <founder>/federation with sorted lists and every parameter; parseGenesis agrees', () => {
    const f = genesis({ parameters: { syncIntervalMs: 2_000 } })
    expect(f.id).toBe(f.cid.toString())
    expect(f.genesis.cid.equals(f.cid)).toBe(true)
    expect(f).toMatchObject({
      name: 'Test Federation',
      founder: founder.did,
      members: [alice],
      nodes: [founder.did, bob].sort(),
      parameters: { ...defaultParameters(), syncIntervalMs: 2_000 },
    })
    const record = decodeSignedBlock(f.genesis.bytes)
    expect(record).toMatchObject({
      type: GENESIS_TYPE,
      chain: `${founder.did}/federation`,
      seq: 0,
      prev: null,
      author: founder.did,
      ts: TS,
    })
    expect(Object.keys(record.body as object).sort()).toEqual([
      'homes',
      'members',
      'name',
      'nodes',
      'parameters',
    ])
    // Every member is written into homes; one the input leaves out is at the first node.
    expect((record.body as { homes: unknown }).homes).toEqual({ [alice]: [founder.did, bob].sort()[0] })
    expect(plain(parseGenesis(f.genesis))).toEqual(plain(f))
  })

  it('is deterministic: the same input, in any order, gives the same federation id', () => {
    expect(genesis({ nodes: [bob, founder.did] }).id).toBe(genesis({ nodes: [founder.did, bob] }).id)
    expect(genesis({ name: 'Other' }).id).not.toBe(genesis().id)
  })

  it('rejects bad input before signing, with the right code', async () => {
    const long = 'x'.repeat(65)
    for (const name of ['', long, 'a/b', 'tab\there', 'émile'])
      expect((await errorOf(() => genesis({ name }))).code).toBe('INVALID_GENESIS')
    expect(genesis({ name: 'x'.repeat(64) }).name).toHaveLength(64)
    expect((await errorOf(() => genesis({ members: [] }))).code).toBe('INVALID_GENESIS')
    expect((await errorOf(() => genesis({ nodes: [] }))).code).toBe('INVALID_GENESIS')
    const dup = await errorOf(() => genesis({ members: [alice, bob, alice] }))
    expect(dup.code).toBe('INVALID_GENESIS')
    expect(dup.message).toContain(alice)
    expect((await errorOf(() => genesis({ nodes: [bob, 'did:key:z6MkNotAKey'] }))).code).toBe('INVALID_DID')
    expect((await errorOf(() => genesis({ members: ['did:web:example.coop'] }))).code).toBe('INVALID_DID')
    const param = await errorOf(() => genesis({ parameters: { maxBlocksPerResponse: 8 } }))
    expect(param.code).toBe('INVALID_PARAMETER')
    expect(param.message).toContain('maxBlocksPerResponse')
    expect((await errorOf(() => genesis({ ts: -1 }))).code).toBe('INVALID_GENESIS')
  })

  it('accepts up to 1000 nodes, not 1001', async () => {
    const dids = Array.from({ length: 1001 }, () => didFromPublicKey(randomBytes(32)))
    expect(genesis({ nodes: dids.slice(0, 1000) }).nodes).toHaveLength(1000)
    expect((await errorOf(() => genesis({ nodes: dids }))).code).toBe('INVALID_GENESIS')
  })

  it('rejects a tampered signature', async () => {
    const record = decodeSignedBlock(genesis().genesis.bytes)
    const sig = new Uint8Array(record.sig)
    sig[10]! ^= 1
    const bytes = dagCbor.encode({ ...record, sig })
    expect(await genesisCode({ cid: cidFor(DAG_CBOR, bytes), bytes })).toMatchObject({
      code: 'INVALID_GENESIS',
      cause: 'INVALID_SIGNATURE',
    })
  })

  it('rejects bytes that do not match the CID, and raw blocks', async () => {
    const f = genesis()
    const bytes = new Uint8Array(f.genesis.bytes)
    bytes[bytes.length - 1]! ^= 1
    expect((await genesisCode({ cid: f.cid, bytes })).cause).toBe('CID_MISMATCH')
    expect((await genesisCode(createRawBlock(f.genesis.bytes))).message).toContain('raw')
  })

  it('rejects a wrong record type, chain, seq or author', async () => {
    expect((await genesisCode(signedRecord({ type: 'icn.value/v1' }))).message).toContain('record type')
    expect((await genesisCode(signedRecord({ chain: chainId(founder.did, 'node') }))).message).toContain(
      'chain',
    )
    const prev = signedRecord().cid
    expect((await genesisCode(signedRecord({ seq: 1, prev }))).message).toContain('seq')
    // Signed by another key but claiming the founder's chain: the block itself is malformed.
    const other = Signer.generate()
    const forged = decodeSignedBlock(signedRecord({}, other).bytes)
    const bytes = dagCbor.encode({ ...forged, chain: chainId(founder.did, GENESIS_CHAIN) })
    expect((await genesisCode({ cid: cidFor(DAG_CBOR, bytes), bytes })).cause).toBe('MALFORMED_BLOCK')
  })

  it('rejects a body that is not exactly a valid genesis body', async () => {
    const good = { name: 'F', members: [alice], nodes: [founder.did], parameters: defaultParameters() }
    const cases: [unknown, RegExp][] = [
      ['a string', /not a map/],
      [{ ...good, extra: 1 }, /must be members, name, nodes, parameters and optionally homes/],
      [{ name: 'F', members: [alice], nodes: [founder.did] }, /must be members/],
      [{ name: 'F', members: [alice], nodes: [founder.did], homes: {} }, /must be members/],
      [{ ...good, name: 7 }, /name/],
      [{ ...good, name: 'bad/name' }, /name/],
      [{ ...good, members: [] }, /at least one/],
      [{ ...good, members: alice }, /list/],
      [{ ...good, nodes: [founder.did, founder.did] }, /more than once/],
      [{ ...good, members: [alice, bob].sort().reverse() }, /sorted/],
      [{ ...good, members: ['did:key:zBad'] }, /did:key/],
      [{ ...good, parameters: { ...defaultParameters(), syncIntervalMs: 10 } }, /syncIntervalMs/],
      [{ ...good, parameters: { ...defaultParameters(), extra: 1 } }, /unknown/],
      [{ ...good, parameters: { syncIntervalMs: 10 } }, /syncIntervalMs/],
      [{ ...good, parameters: { manaCap: -1 } }, /manaCap/],
      [{ ...good, parameters: null }, /parameters/],
      [{ ...good, homes: [alice] }, /homes must be a map/],
      [{ ...good, homes: 'x' }, /homes must be a map/],
      [{ ...good, homes: { [bob]: founder.did } }, /not one of the members/],
      [{ ...good, homes: { [alice]: bob } }, /must be one of the nodes/],
      [{ ...good, homes: { [alice]: 7 } }, /must be one of the nodes, got number/],
    ]
    for (const [body, expected] of cases) {
      const r = await genesisCode(signedRecord({ body }))
      expect(r.message, JSON.stringify(body)).toMatch(expected)
    }
    const dupDid = await errorOf(() =>
      parseGenesis(signedRecord({ body: { ...good, members: ['did:key:zBad'] } })),
    )
    expect((dupDid.cause as { code: string }).code).toBe('INVALID_DID')
  })
})

describe('parameters added after a genesis was written', () => {
  it('a genesis with only some parameters is valid: the others take their defaults', () => {
    const body = { name: 'F', members: [alice], nodes: [founder.did], parameters: { syncIntervalMs: 2_000 } }
    const f = parseGenesis(signedRecord({ body }))
    expect(f.parameters).toEqual({ ...defaultParameters(), syncIntervalMs: 2_000 })
    expect(parseGenesis(signedRecord({ body: { ...body, parameters: {} } })).parameters).toEqual(
      defaultParameters(),
    )
  })

  it('loads a genesis file written before the ledger parameters and homes existed', async () => {
    // Written by the code of commit f673ac7 (four parameters, syncIntervalMs set to 5000, no homes).
    const f = await readGenesisFile(
      new URL('../../fixtures/genesis-four-parameters.car', import.meta.url).pathname,
    )
    expect(f.id).toBe('bafyreifrogvmdpf2nhldwra5ivmsz22kjgbemzdpaxliz6izyr4ry6rkey')
    const record = decodeSignedBlock(f.genesis.bytes)
    expect(Object.keys(record.body as object).sort()).toEqual(['members', 'name', 'nodes', 'parameters'])
    expect(Object.keys((record.body as { parameters: object }).parameters)).toHaveLength(4)
    expect(f.parameters).toEqual({
      ...defaultParameters(),
      syncIntervalMs: 5_000,
      manaCap: 10_000,
      manaRegenSeconds: 86_400,
      memberAllocation: 10_000,
      treasuryAllocation: 0,
      settlementFeeBps: 100,
      ledgerSkewMs: 30_000,
      recordMaxTtlMs: 3_600_000,
    })
    // No homes in the file: every member is homed at the first node in sorted order.
    expect(f.nodes).toHaveLength(2)
    expect(f.homes).toEqual(Object.fromEntries(f.members.map((m) => [m, f.nodes[0]])))
    // Rewriting it keeps its bytes (and so its id): nothing is re-encoded.
    const path = join(dir, 'old-rewritten.car')
    await writeGenesisFile(path, f)
    expect((await readGenesisFile(path)).id).toBe(f.id)
  })
})

describe('member homes', () => {
  const nodes = [founder.did, bob].sort()

  it('records the given homes and homes the others at the first node in sorted order', () => {
    const carol = Signer.generate().did
    const f = genesis({ members: [alice, carol], nodes, homes: { [carol]: nodes[1]! } })
    expect(f.homes).toEqual({ [alice]: nodes[0], [carol]: nodes[1] })
    expect(memberHome(f, carol)).toBe(nodes[1])
    expect(memberHome(f, alice)).toBe(nodes[0])
    expect(memberHome(f, bob)).toBeUndefined()
    expect(memberHome(f, 'toString')).toBeUndefined()
    expect(memberHome(f, '__proto__')).toBeUndefined()
    expect(parseGenesis(f.genesis).homes).toEqual(f.homes)
    expect(federationSummary(f).homes).toEqual(f.homes)
    // The same homes, given or defaulted, are the same genesis.
    expect(genesis({ members: [alice], nodes, homes: { [alice]: nodes[0]! } }).id).toBe(
      genesis({ members: [alice], nodes }).id,
    )
  })

  it('a stored genesis may leave members out of homes, or have no homes at all', () => {
    const carol = Signer.generate().did
    const members = [alice, carol].sort()
    const base = { name: 'F', members, nodes, parameters: defaultParameters() }
    expect(parseGenesis(signedRecord({ body: base })).homes).toEqual({ [alice]: nodes[0], [carol]: nodes[0] })
    expect(parseGenesis(signedRecord({ body: { ...base, homes: {} } })).homes).toEqual({
      [alice]: nodes[0],
      [carol]: nodes[0],
    })
    expect(parseGenesis(signedRecord({ body: { ...base, homes: { [carol]: nodes[1] } } })).homes).toEqual({
      [alice]: nodes[0],
      [carol]: nodes[1],
    })
  })

  it('rejects homes for non-members and homes that are not nodes, before signing', async () => {
    const notMember = await errorOf(() => genesis({ members: [alice], nodes, homes: { [bob]: nodes[0]! } }))
    expect(notMember).toBeInstanceOf(InvalidGenesisError)
    expect(notMember.message).toContain('not one of the members')
    const notNode = await errorOf(() => genesis({ members: [alice], nodes, homes: { [alice]: alice } }))
    expect(notNode).toBeInstanceOf(InvalidGenesisError)
    expect(notNode.message).toContain('must be one of the nodes')
    const bad = await errorOf(() => genesis({ homes: 'nope' as unknown as Record<string, string> }))
    expect(bad.code).toBe('INVALID_GENESIS')
  })
})

describe('genesis files', () => {
  it('round trip: write then read gives the same federation; the file is a one-root, one-block CARv1', async () => {
    const f = genesis()
    const path = join(dir, 'roundtrip.car')
    await writeGenesisFile(path, f)
    expect((await stat(path)).mode & 0o777).toBe(0o644)
    expect(plain(await readGenesisFile(path))).toEqual(plain(f))
    expect((await readdir(dir)).filter((n) => n.includes('.tmp'))).toEqual([])
  })

  it('never overwrites an existing file unless forced', async () => {
    const path = join(dir, 'exists.car')
    await writeFile(path, 'keep me')
    const err = await errorOf(() => writeGenesisFile(path, genesis()))
    expect(err).toBeInstanceOf(GenesisExistsError)
    expect(err.code).toBe('GENESIS_EXISTS')
    expect(await readFile(path, 'utf8')).toBe('keep me')
    await writeGenesisFile(path, genesis(), { force: true })
    expect((await readGenesisFile(path)).id).toBe(genesis().id)
    expect((await readdir(dir)).filter((n) => n.includes('.tmp'))).toEqual([])
  })

  it('refuses to write a federation whose genesis does not check out', async () => {
    const f = genesis()
    const path = join(dir, 'never.car')
    const tampered = { ...f, genesis: { cid: f.cid, bytes: f.genesis.bytes.slice(0, -1) } }
    expect((await errorOf(() => writeGenesisFile(path, tampered))).code).toBe('INVALID_GENESIS')
    expect((await errorOf(() => writeGenesisFile(path, { ...f, id: 'bafyother' }))).code).toBe(
      'INVALID_GENESIS',
    )
    await expect(stat(path)).rejects.toThrow()
  })

  it('a missing file is GENESIS_NOT_FOUND, naming the path', async () => {
    const path = join(dir, 'missing.car')
    const err = await errorOf(() => readGenesisFile(path))
    expect(err).toBeInstanceOf(GenesisNotFoundError)
    expect(err.code).toBe('GENESIS_NOT_FOUND')
    expect(err.message).toContain(path)
  })

  it('rejects everything but one root and one genesis block', async () => {
    const f = genesis()
    const g2 = genesis({ name: 'Second' })
    const raw = createRawBlock(new Uint8Array([1, 2, 3]))
    const good = await readFile(await carFile('good.car', [f.cid], [f.genesis]))
    const garbage = join(dir, 'garbage.car')
    await writeFile(garbage, randomBytes(300))
    const empty = join(dir, 'empty.car')
    await writeFile(empty, '')
    const trailing = join(dir, 'trailing.car')
    await writeFile(trailing, Buffer.concat([good, Buffer.from([0x00, 0x01, 0x02])]))
    const truncated = join(dir, 'truncated.car')
    await writeFile(truncated, good.subarray(0, good.length - 5))
    const folder = join(dir, 'a-folder.car')
    await mkdir(folder)
    const files: [string, RegExp][] = [
      [await carFile('two-roots.car', [f.cid, g2.cid], [f.genesis, g2.genesis]), /2 roots/],
      [await carFile('no-roots.car', [], [f.genesis]), /0 roots/],
      [await carFile('two-blocks.car', [f.cid], [f.genesis, g2.genesis]), /more than one block/],
      [await carFile('no-block.car', [f.cid], []), /no block/],
      [await carFile('wrong-root.car', [g2.cid], [f.genesis]), /not the root/],
      [await carFile('raw.car', [raw.cid], [raw]), /raw/],
      [
        await carFile(
          'value.car',
          [signedRecord({ type: 'icn.value/v1' }).cid],
          [signedRecord({ type: 'icn.value/v1' })],
        ),
        /record type/,
      ],
      [garbage, /not a CAR|corrupt/],
      [empty, /empty/],
      [trailing, /corrupt|truncated/],
      [truncated, /corrupt|truncated/],
      [folder, /not a file/],
    ]
    for (const [path, expected] of files) {
      const err = await errorOf(() => readGenesisFile(path))
      expect(err.code, path).toBe('INVALID_GENESIS')
      expect(err.message, path).toMatch(expected)
    }
  })
})
