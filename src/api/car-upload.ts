import type { Readable } from 'node:stream'
import * as dagCbor from '@ipld/dag-cbor'
import { InvalidCarError, MAX_BLOCK_BYTES } from '../dag/index.js'
import { PayloadTooLargeError } from './errors.js'

/** CAR imports a node runs at once; another one meanwhile is 503 IMPORT_BUSY. */
export const MAX_CONCURRENT_IMPORTS = 2
/** Largest CARv1 header (its roots): 8 MiB holds over 200,000 root CIDs. */
export const MAX_CAR_HEADER_BYTES = 8 * 1024 * 1024
/** Largest CARv1 section: a block of the largest size with a CID (far shorter than 256 bytes). */
const MAX_SECTION_BYTES = MAX_BLOCK_BYTES + 256

export interface ReadCarUploadOptions {
  /** Refuse more than this many bytes (PayloadTooLargeError). */
  maxBytes: number
  /** Content-Length of the request, when it has one: refused at once if over `maxBytes`. */
  declaredLength?: number
  /** Told of every byte held in memory for this upload (positive as it arrives). */
  onHeld?: (bytes: number) => void
}

/**
 * Read a CAR upload into memory, checking its framing as the bytes arrive: the CARv1 header (length, then a
 * DAG-CBOR map with `version` 1 and `roots`) and every section's length (1 byte to one block with its CID).
 * Anything that is not a CAR file is refused after its first bytes (InvalidCarError, `details.offset` where
 * it went wrong) rather than after the whole body; a body over `maxBytes` is refused as soon as it passes the
 * limit. The blocks themselves are checked afterwards by `importCar`. A CARv2 is read whole and left to it.
 *
 * On failure the rest of the body is read and discarded (not held), so the reply can still be sent on the
 * connection.
 */
export function readCarUpload(source: Readable, opts: ReadCarUploadOptions): Promise<Uint8Array> {
  if (opts.declaredLength !== undefined && opts.declaredLength > opts.maxBytes)
    return Promise.reject(new PayloadTooLargeError(opts.maxBytes, opts.declaredLength))
  const framing = new CarFraming()
  // With a declared length the bytes are copied into one buffer of that size, allocated once the first chunk
  // passed the framing check (garbage allocates nothing), so the upload is held once, not twice (parts + concat).
  const declared = opts.declaredLength
  let whole: Buffer | undefined
  const parts: Buffer[] = []
  let total = 0
  return new Promise<Uint8Array>((resolve, reject) => {
    const stop = (err?: Error): void => {
      source.removeListener('data', onData)
      source.removeListener('end', onEnd)
      source.removeListener('error', onError)
      source.removeListener('close', onClose)
      if (err) {
        parts.length = 0
        whole = undefined
        // Discard what is still coming: nothing listens for it any more.
        source.resume()
        reject(err)
      }
    }
    const onData = (chunk: Buffer): void => {
      if (total + chunk.length > opts.maxBytes) {
        stop(new PayloadTooLargeError(opts.maxBytes, total + chunk.length))
        return
      }
      try {
        framing.push(chunk, total)
      } catch (err) {
        stop(err as Error)
        return
      }
      if (declared !== undefined) {
        if (total + chunk.length > declared) {
          stop(new InvalidCarError(`the body is longer than its declared ${declared} bytes`))
          return
        }
        whole ??= Buffer.allocUnsafe(declared)
        chunk.copy(whole, total)
      } else parts.push(chunk)
      total += chunk.length
      opts.onHeld?.(chunk.length)
    }
    const onEnd = (): void => {
      try {
        framing.end(total)
      } catch (err) {
        stop(err as Error)
        return
      }
      stop()
      if (whole) resolve(total === whole.length ? whole : whole.subarray(0, total))
      else resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, total))
    }
    const onError = (err: Error): void => stop(err)
    const onClose = (): void => stop(new InvalidCarError('the upload was cut off before its end'))
    source.on('data', onData)
    source.on('end', onEnd)
    source.on('error', onError)
    source.on('close', onClose)
  })
}

type State =
  | { at: 'headerLength' }
  | { at: 'header'; need: number; bytes: Buffer[]; have: number }
  | { at: 'sectionLength' }
  | { at: 'section'; left: number }
  | { at: 'unchecked' }

/** Incremental check of CARv1 framing: header, then length-prefixed sections, ending on a section boundary. */
class CarFraming {
  private state: State = { at: 'headerLength' }
  private varint = { value: 0, shift: 0, bytes: 0 }
  private sections = 0

  push(chunk: Buffer, offset: number): void {
    let i = 0
    while (i < chunk.length) {
      const s = this.state
      if (s.at === 'unchecked') return
      if (s.at === 'headerLength' || s.at === 'sectionLength') {
        const length = this.readVarint(chunk[i++]!, offset + i - 1)
        if (length === undefined) continue
        if (s.at === 'headerLength') {
          if (length === 0 || length > MAX_CAR_HEADER_BYTES)
            throw framingError(
              `not a CAR file: its header would be ${length} bytes (1 to ${MAX_CAR_HEADER_BYTES})`,
              offset + i,
            )
          this.state = { at: 'header', need: length, bytes: [], have: 0 }
        } else {
          if (length === 0 || length > MAX_SECTION_BYTES)
            throw framingError(
              `CAR is corrupt: section ${this.sections} would be ${length} bytes (1 to ${MAX_SECTION_BYTES})`,
              offset + i,
            )
          this.state = { at: 'section', left: length }
        }
        continue
      }
      if (s.at === 'header') {
        const take = Math.min(s.need - s.have, chunk.length - i)
        s.bytes.push(chunk.subarray(i, i + take))
        s.have += take
        i += take
        if (s.have === s.need) this.state = checkHeader(Buffer.concat(s.bytes), offset + i)
        continue
      }
      const take = Math.min(s.left, chunk.length - i)
      s.left -= take
      i += take
      if (s.left === 0) {
        this.sections++
        this.state = { at: 'sectionLength' }
      }
    }
  }

  end(offset: number): void {
    const s = this.state
    if (s.at === 'unchecked') return
    if (offset === 0) throw framingError('CAR is empty (0 bytes): not a CAR file', 0)
    if (s.at !== 'sectionLength' || this.varint.bytes !== 0)
      throw framingError(
        s.at === 'headerLength' || s.at === 'header'
          ? 'CAR is truncated: it ends inside its header'
          : `CAR is truncated: it ends inside section ${this.sections}`,
        offset,
      )
  }

  /** One byte of an unsigned LEB128 varint; the value once complete. */
  private readVarint(byte: number, at: number): number | undefined {
    const v = this.varint
    v.value += (byte & 0x7f) * 2 ** v.shift
    v.shift += 7
    v.bytes++
    if (byte & 0x80) {
      if (v.bytes >= 8) throw framingError('not a CAR file: a length prefix is over 7 bytes long', at)
      return undefined
    }
    const value = v.value
    this.varint = { value: 0, shift: 0, bytes: 0 }
    return value
  }
}

function checkHeader(bytes: Buffer, offset: number): State {
  let header: unknown
  try {
    header = dagCbor.decode(bytes)
  } catch (err) {
    throw framingError(`not a CAR file: its header is not DAG-CBOR (${(err as Error).message})`, offset)
  }
  const h = header as { version?: unknown; roots?: unknown } | null
  if (h && typeof h === 'object' && h.version === 2) return { at: 'unchecked' }
  if (!h || typeof h !== 'object' || h.version !== 1 || !Array.isArray(h.roots))
    throw framingError('not a CAR file: its header is not { version: 1, roots: [...] }', offset)
  return { at: 'sectionLength' }
}

function framingError(message: string, offset: number): InvalidCarError {
  return new InvalidCarError(message, { details: { offset } })
}
