import { randomBytes } from 'node:crypto'
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { CarBlockIterator, CarWriter } from '@ipld/car'
import { varint } from 'multiformats'
// The dag files themselves, not dag/index.js: that would load both store backends into every CLI command.
import { type Block, chainId, createSignedBlock, MAX_BLOCK_BYTES, validateBlock } from '../dag/block.js'
import type { CID } from '../dag/cid.js'
import { IcnError, InvalidDidError, isDid, type Signer } from '../identity/index.js'
import { GenesisExistsError, GenesisNotFoundError, InvalidGenesisError } from './errors.js'
import { checkParameters, type FederationParameters } from './params.js'

/** Record type of a federation genesis block. */
export const GENESIS_TYPE = 'icn.federation.genesis/v1'
/** Chain name of the genesis: the block is seq 0 of `<founder DID>/federation`. */
export const GENESIS_CHAIN = 'federation'
/** Most node DIDs a genesis may list. */
export const MAX_GENESIS_NODES = 1000
/** Federation names: 1 to 64 of `A–Z a–z 0–9 space . _ -`. */
export const FEDERATION_NAME = /^[A-Za-z0-9 ._-]{1,64}$/

/** Largest genesis CAR file read: one block at its size limit plus the CAR framing. */
const MAX_GENESIS_FILE_BYTES = MAX_BLOCK_BYTES + 1024
/** Keys every genesis body has. */
const BODY_KEYS = ['members', 'name', 'nodes', 'parameters']
/** Keys a genesis body may have besides (added later: a genesis without them stays valid). */
const OPTIONAL_BODY_KEYS = ['homes']

/** What the founder decides when creating a federation. */
export interface GenesisInput {
  /** 1..64 characters of `A–Z a–z 0–9 space . _ -`. */
  name: string
  /** Founding members' DIDs (at least one; any order, no duplicates). */
  members: string[]
  /** Node DIDs allowed to join (1..1000; any order, no duplicates). */
  nodes: string[]
  /**
   * Home node of each founding member: member DID → node DID (a key must be one of `members`, a value one of
   * `nodes`). A member left out is homed at the first node in sorted order.
   */
  homes?: Record<string, string>
  /** Parameters to set; the others take their defaults. */
  parameters?: Partial<FederationParameters>
  /** The genesis block's timestamp (ms since the Unix epoch); default now. */
  ts?: number
}

/** A federation, as defined by its signed genesis block. */
export interface Federation {
  /** Genesis CID as a string: the federation id. */
  id: string
  /** The same, as a CID. */
  cid: CID
  name: string
  /** DID that signed the genesis. */
  founder: string
  /** Founding members' DIDs, unique, sorted, at least one. */
  members: string[]
  /** Node DIDs allowed to join, unique, sorted, 1..1000. */
  nodes: string[]
  /**
   * Home node of every founding member (member DID → node DID, one of `nodes`): as the genesis says, and for a
   * member it does not name (or a genesis without `homes`), the first node in sorted order.
   */
  homes: Record<string, string>
  /** Every parameter, defaults filled. */
  parameters: FederationParameters
  /** The signed genesis block. */
  genesis: Block
}

/** What people are shown of a federation (CLI, API): everything but the genesis block itself. */
export function federationSummary(
  f: Federation,
): Pick<Federation, 'id' | 'name' | 'founder' | 'members' | 'nodes' | 'homes' | 'parameters'> {
  const { id, name, founder, members, nodes, homes, parameters } = f
  return { id, name, founder, members, nodes, homes: { ...homes }, parameters: { ...parameters } }
}

/** The home node of a founding member of `f`, or undefined if `did` is not one. */
export function memberHome(f: Pick<Federation, 'homes'>, did: string): string | undefined {
  return Object.hasOwn(f.homes, did) ? f.homes[did] : undefined
}

/** The body of a genesis record (`createGenesis` writes `homes` with every member in it). */
export interface GenesisBody {
  name: string
  members: string[]
  nodes: string[]
  homes?: Record<string, string>
  parameters: FederationParameters
}

/**
 * Sign a genesis block with the founder's signer: record type `icn.federation.genesis/v1`, seq 0 of chain
 * `<founder>/federation`, body `{name, members, nodes, homes, parameters}` with the DID lists sorted, every
 * member in `homes` (those the input leaves out at the first node) and every parameter present. Checks the
 * input first: InvalidGenesisError (name, empty or duplicate lists, too many nodes, a home that is not one of the
 * nodes or given for a DID that is not a member), InvalidParameterError (parameters), InvalidDidError (a DID
 * that is not an Ed25519 did:key).
 */
export function createGenesis(signer: Signer, input: GenesisInput): Federation {
  const body = checkGenesisInput(input)
  const ts = input.ts ?? Date.now()
  if (!Number.isSafeInteger(ts) || ts < 0)
    throw new InvalidGenesisError(`ts must be a non-negative integer (ms), got ${ts}`)
  let block: Block
  try {
    block = createSignedBlock(signer, {
      type: GENESIS_TYPE,
      chain: chainId(signer.did, GENESIS_CHAIN),
      seq: 0,
      prev: null,
      ts,
      body,
    })
  } catch (err) {
    throw new InvalidGenesisError(`cannot create the genesis block: ${(err as Error).message}`, {
      cause: err,
    })
  }
  return federationOf({ cid: block.cid, bytes: block.bytes }, signer.did, body)
}

/**
 * The checks `createGenesis` runs on its input, without signing (so a caller can reject bad input before it
 * unlocks a key): returns the body it would sign, DID lists sorted and every parameter filled. Throws like
 * `createGenesis`.
 */
export function checkGenesisInput(input: GenesisInput): GenesisBody {
  checkName(input.name)
  const members = didList(input.members, 'members')
  const nodes = didList(input.nodes, 'nodes')
  const homes = fillHomes(checkHomes(input.homes ?? {}, members, nodes), members, nodes)
  const parameters = checkParameters(input.parameters ?? {})
  return { name: input.name, members, nodes, homes, parameters }
}

/**
 * Fully check a genesis block from outside: every block check (size, CID, canonical DAG-CBOR, shape,
 * signature), then record type, chain `<author>/federation`, seq 0, prev null, and the body: `name`, `members`,
 * `nodes`, `parameters` and optionally `homes`, nothing else; DID lists of valid Ed25519 did:keys, sorted,
 * without duplicates, not empty (nodes at most 1000); `homes` a map from member DIDs to node DIDs; parameters
 * known and within bounds, a missing one at its default (a genesis from before the parameter existed). A member
 * that `homes` does not name (or every member, without `homes`) is homed at the first node. Throws
 * InvalidGenesisError saying what is wrong (the typed error underneath, if any, as its cause).
 */
export function parseGenesis(block: Block): Federation {
  let validated: ReturnType<typeof validateBlock>
  try {
    validated = validateBlock(block.cid, block.bytes)
  } catch (err) {
    const code = err instanceof IcnError ? `${err.code}: ` : ''
    throw new InvalidGenesisError(`genesis block fails validation: ${code}${(err as Error).message}`, {
      cause: err,
      details: { cid: String(block.cid), ...(err instanceof IcnError ? { code: err.code } : {}) },
    })
  }
  if (validated.kind !== 'signed')
    throw new InvalidGenesisError(`genesis ${block.cid} is a raw block, not a signed record`)
  const record = validated.block
  if (record.type !== GENESIS_TYPE)
    throw new InvalidGenesisError(`record type is ${record.type}, not ${GENESIS_TYPE}`)
  const chain = chainId(record.author, GENESIS_CHAIN)
  if (record.chain !== chain) throw new InvalidGenesisError(`chain is ${record.chain}, not ${chain}`)
  if (record.seq !== 0) throw new InvalidGenesisError(`seq is ${record.seq}, a genesis is block 0`)
  if (record.prev !== null) throw new InvalidGenesisError('prev must be null in a genesis')

  const body = record.body as Record<string, unknown> | null
  if (body === null || typeof body !== 'object' || Array.isArray(body) || body instanceof Uint8Array)
    throw new InvalidGenesisError('genesis body is not a map')
  const keys = Object.keys(body).sort()
  const required = keys.filter((k) => !OPTIONAL_BODY_KEYS.includes(k))
  if (required.length !== BODY_KEYS.length || required.some((k, i) => k !== BODY_KEYS[i]))
    throw new InvalidGenesisError(
      `genesis body fields must be ${BODY_KEYS.join(', ')} and optionally ${OPTIONAL_BODY_KEYS.join(', ')}; ` +
        `got ${keys.join(', ')}`,
    )
  try {
    if (typeof body.name !== 'string') throw new InvalidGenesisError('name must be a string')
    checkName(body.name)
    const members = didList(body.members, 'members', true)
    const nodes = didList(body.nodes, 'nodes', true)
    const homes = Object.hasOwn(body, 'homes') ? checkHomes(body.homes, members, nodes) : {}
    // A parameter the genesis lacks takes its default (checkParameters fills it): old files stay valid.
    const parameters = checkParameters(body.parameters)
    return federationOf(block, record.author, {
      name: body.name,
      members,
      nodes,
      homes: fillHomes(homes, members, nodes),
      parameters,
    })
  } catch (err) {
    if (err instanceof InvalidGenesisError) throw err
    throw new InvalidGenesisError(`invalid genesis: ${(err as Error).message}`, {
      cause: err,
      details: err instanceof IcnError ? { code: err.code, ...err.details } : undefined,
    })
  }
}

/**
 * Read and fully check a genesis CAR file: CARv1, exactly one root, exactly one block (the root), which
 * `parseGenesis` accepts. A missing file is GenesisNotFoundError; anything else wrong is InvalidGenesisError.
 */
export async function readGenesisFile(path: string): Promise<Federation> {
  let bytes: Uint8Array
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new InvalidGenesisError(`${path} is not a file`)
    if (info.size > MAX_GENESIS_FILE_BYTES)
      throw new InvalidGenesisError(`${path} is ${info.size} bytes, too large for a genesis file`)
    bytes = new Uint8Array(await readFile(path))
  } catch (err) {
    if (err instanceof InvalidGenesisError) throw err
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new GenesisNotFoundError(path)
    throw new InvalidGenesisError(`cannot read ${path}: ${(err as Error).message}`, { cause: err })
  }
  const block = await singleBlockCar(bytes, path)
  try {
    return parseGenesis(block)
  } catch (err) {
    throw new InvalidGenesisError(`${path}: ${(err as Error).message}`, {
      cause: err,
      details: { path, ...(err as InvalidGenesisError).details },
    })
  }
}

/**
 * Write the genesis as a CARv1 file (roots = [genesis CID], one block), atomically: a temp file in the same
 * folder, fsynced, then moved into place; mode 0644. An existing file is never replaced (GenesisExistsError,
 * checked atomically) unless `force` is set. The federation is checked with `parseGenesis` first.
 */
export async function writeGenesisFile(
  path: string,
  federation: Federation,
  opts: { force?: boolean } = {},
): Promise<void> {
  const checked = parseGenesis(federation.genesis)
  if (checked.id !== federation.id)
    throw new InvalidGenesisError(`federation id ${federation.id} is not its genesis CID ${checked.id}`)
  const bytes = await encodeCar(checked.genesis)
  if (!opts.force && (await exists(path))) throw new GenesisExistsError(path)

  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', 0o644)
  try {
    try {
      await fh.writeFile(bytes)
      await fh.chmod(0o644)
      await fh.sync()
    } finally {
      await fh.close()
    }
    if (opts.force) {
      await rename(tmp, path)
    } else {
      // link() fails if the path exists, so a file created since the check above is not replaced either.
      try {
        await link(tmp, path)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new GenesisExistsError(path)
        throw err
      }
      await unlink(tmp)
    }
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
  await syncDir(dirname(path))
}

function federationOf(block: Block, founder: string, body: GenesisBody): Federation {
  return {
    id: block.cid.toString(),
    cid: block.cid,
    name: body.name,
    founder,
    members: body.members,
    nodes: body.nodes,
    homes: fillHomes(body.homes ?? {}, body.members, body.nodes),
    parameters: body.parameters,
    genesis: { cid: block.cid, bytes: block.bytes },
  }
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !FEDERATION_NAME.test(name))
    throw new InvalidGenesisError(
      `federation name must be 1 to 64 characters of A-Z a-z 0-9 space . _ -, got ${JSON.stringify(
        typeof name === 'string' ? name.slice(0, 80) : name,
      )}`,
    )
}

/**
 * A checked DID list, sorted. When creating (`stored` false) any order is accepted; in a stored genesis the
 * list must already be sorted, so one federation has one encoding.
 */
function didList(value: unknown, field: 'members' | 'nodes', stored = false): string[] {
  if (!Array.isArray(value)) throw new InvalidGenesisError(`${field} must be a list of DIDs`)
  if (value.length === 0) throw new InvalidGenesisError(`${field} must list at least one DID`)
  if (field === 'nodes' && value.length > MAX_GENESIS_NODES)
    throw new InvalidGenesisError(`nodes lists ${value.length} DIDs, more than ${MAX_GENESIS_NODES}`)
  for (const [i, did] of value.entries()) {
    if (!isDid(did)) {
      const shown = typeof did === 'string' ? JSON.stringify(did.slice(0, 80)) : typeof did
      throw new InvalidDidError(`${field}[${i}] is not an Ed25519 did:key: ${shown}`, {
        details: { field, index: i },
      })
    }
  }
  const sorted = [...(value as string[])].sort()
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i] === sorted[i - 1])
      throw new InvalidGenesisError(`${field} lists ${sorted[i]} more than once`, {
        details: { field, did: sorted[i] },
      })
  if (stored && sorted.some((did, i) => did !== value[i]))
    throw new InvalidGenesisError(`${field} must be sorted`)
  return sorted
}

/**
 * A checked `homes` map: a plain map whose keys are members and whose values are nodes (both lists already
 * checked). Returns a copy. Throws InvalidGenesisError naming the bad entry.
 */
function checkHomes(value: unknown, members: string[], nodes: string[]): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array)
    throw new InvalidGenesisError('homes must be a map from member DIDs to node DIDs')
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null)
    throw new InvalidGenesisError('homes must be a map from member DIDs to node DIDs')
  const isMember = new Set(members)
  const isNode = new Set(nodes)
  const out: Record<string, string> = {}
  for (const [member, node] of Object.entries(value as Record<string, unknown>)) {
    const shown = JSON.stringify(member.slice(0, 80))
    if (!isMember.has(member))
      throw new InvalidGenesisError(`homes names ${shown}, which is not one of the members`, {
        details: { member: member.slice(0, 80) },
      })
    if (typeof node !== 'string' || !isNode.has(node))
      throw new InvalidGenesisError(
        `the home of member ${member} must be one of the nodes, got ${
          typeof node === 'string' ? JSON.stringify(node.slice(0, 80)) : typeof node
        }`,
        { details: { member, ...(typeof node === 'string' ? { node: node.slice(0, 80) } : {}) } },
      )
    out[member] = node
  }
  return out
}

/** `homes` with every member in it: one the map leaves out is homed at the first node (`nodes` is sorted). */
function fillHomes(
  homes: Record<string, string>,
  members: string[],
  nodes: string[],
): Record<string, string> {
  const first = nodes[0]!
  const out: Record<string, string> = {}
  for (const m of members) out[m] = Object.hasOwn(homes, m) ? homes[m]! : first
  return out
}

/** The one block of a one-root, one-block CARv1. */
async function singleBlockCar(bytes: Uint8Array, path: string): Promise<Block> {
  if (bytes.length === 0) throw new InvalidGenesisError(`${path} is empty`)
  let reader: CarBlockIterator
  let roots: CID[]
  try {
    reader = await CarBlockIterator.fromBytes(bytes)
    roots = await reader.getRoots()
  } catch (err) {
    throw new InvalidGenesisError(`${path} is not a CAR file: ${(err as Error).message}`, { cause: err })
  }
  if (reader.version !== 1) throw new InvalidGenesisError(`${path} is a CARv${reader.version}, not a CARv1`)
  if (roots.length !== 1)
    throw new InvalidGenesisError(`${path} has ${roots.length} roots; a genesis file has exactly one`)
  const root = roots[0]!
  // Like dag/car.ts: count the bytes every section must have used, so a bad section length cannot loop.
  const [headerLength, headerSize] = varint.decode(bytes)
  let consumed = headerLength + headerSize
  const blocks: Block[] = []
  try {
    for await (const block of reader) {
      const section = block.cid.bytes.length + block.bytes.length
      consumed += varint.encodingLength(section) + section
      blocks.push({ cid: block.cid, bytes: block.bytes })
      if (blocks.length > 1 || consumed > bytes.length) break
    }
  } catch (err) {
    throw new InvalidGenesisError(`${path} is corrupt or truncated: ${(err as Error).message}`, {
      cause: err,
    })
  }
  if (blocks.length !== 1)
    throw new InvalidGenesisError(
      `${path} holds ${blocks.length === 0 ? 'no block' : 'more than one block'}; a genesis file holds exactly one`,
    )
  if (consumed !== bytes.length)
    throw new InvalidGenesisError(
      `${path} is corrupt: its sections account for ${consumed} of ${bytes.length} bytes`,
    )
  const block = blocks[0]!
  if (!block.cid.equals(root))
    throw new InvalidGenesisError(`${path}: the block ${block.cid} is not the root ${root}`)
  return block
}

async function encodeCar(block: Block): Promise<Uint8Array> {
  const { writer, out } = CarWriter.create([block.cid])
  const collect = (async () => {
    const parts: Uint8Array[] = []
    for await (const part of out) parts.push(part)
    return Buffer.concat(parts)
  })()
  await writer.put(block)
  await writer.close()
  return new Uint8Array(await collect)
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}
