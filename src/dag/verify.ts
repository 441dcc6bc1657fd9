import { isInputError } from './base.js'
import { validateBlock } from './block.js'
import { type CID, RAW } from './cid.js'
import { checkAborted, UnanchoredChunkError } from './errors.js'
import type { BlockStore } from './store.js'

export interface VerifyStoreOptions {
  signal?: AbortSignal
  /** Called after each block checked, with the count so far. */
  onProgress?: (checked: number) => void
}

export interface BadBlock {
  cid: string
  /** The error code validation gave: CID_MISMATCH, INVALID_SIGNATURE, MALFORMED_BLOCK, UNANCHORED_CHUNK, ... */
  code: string
  message: string
}

export interface VerifyStoreResult {
  checked: number
  bad: BadBlock[]
}

/**
 * Re-check every stored block as if it had just arrived (`icn dag verify`): a raw block's hash, a signed
 * block's CID, encoding, fields and signature; then that every raw chunk is linked by some stored signed block
 * (through the store's links). Reports what is wrong instead of throwing; read errors of the store still throw.
 */
export async function verifyStore(
  store: BlockStore,
  opts: VerifyStoreOptions = {},
): Promise<VerifyStoreResult> {
  const { signal } = opts
  checkAborted(signal)
  const bad: BadBlock[] = []
  const anchored = new Set<string>()
  const chunks: CID[] = []
  let checked = 0
  for await (const { cid, bytes } of store.all({ signal })) {
    let valid = true
    try {
      validateBlock(cid, bytes)
    } catch (err) {
      bad.push(describe(cid, err))
      valid = false
    }
    if (cid.code === RAW) chunks.push(cid)
    else
      for (const child of await linksOf(store, cid, valid, signal))
        if (child.code === RAW) anchored.add(child.toString())
    checked++
    opts.onProgress?.(checked)
  }
  for (const cid of chunks) {
    const key = cid.toString()
    if (!anchored.has(key)) bad.push(describe(cid, new UnanchoredChunkError(key)))
  }
  return { checked, bad }
}

/** A block's links; for a block already reported bad, none if its bytes cannot even be decoded. */
async function linksOf(store: BlockStore, cid: CID, valid: boolean, signal?: AbortSignal): Promise<CID[]> {
  try {
    return await store.links(cid, { signal })
  } catch (err) {
    if (!valid && isInputError(err)) return []
    throw err
  }
}

function describe(cid: CID, err: unknown): BadBlock {
  const code = (err as { code?: unknown })?.code
  return {
    cid: cid.toString(),
    code: typeof code === 'string' ? code : 'UNKNOWN',
    message: err instanceof Error ? err.message : String(err),
  }
}
