import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { IcnError } from './errors.js'
import { verifyEd25519 } from './keys.js'

/** A signature worker died or the verifier was closed with checks pending; nothing was decided. Retry. */
export class VerifierUnavailableError extends IcnError {
  override readonly name = 'VerifierUnavailableError'
  constructor(message: string) {
    super('VERIFIER_UNAVAILABLE', message)
  }
}

/** One Ed25519 check: the exact signed bytes (domain tag included), the signature and the raw public key. */
export interface SignatureCheck {
  publicKey: Uint8Array
  message: Uint8Array
  signature: Uint8Array
}

/**
 * Verifies many signatures at once. Every implementation uses the same `node:crypto` Ed25519 verify (strict
 * RFC 8032, OpenSSL), so where a check runs never changes its answer.
 */
export interface SignatureVerifier {
  /** One boolean per check, in order. */
  verifyMany(checks: SignatureCheck[]): Promise<boolean[]>
  close(): Promise<void>
}

/** Verifies on the calling thread. */
export class InlineVerifier implements SignatureVerifier {
  async verifyMany(checks: SignatureCheck[]): Promise<boolean[]> {
    // A key of the wrong length can sign nothing: false, as on the workers, not an exception.
    return checks.map((c) => c.publicKey.length === 32 && verifyEd25519(c.publicKey, c.message, c.signature))
  }

  async close(): Promise<void> {}
}

export interface WorkerVerifierOptions {
  /**
   * Worker threads. Default: cores − 1 (the main thread keeps a core for decoding and storing), but at least 2:
   * on a 2-core machine one worker left verification to half the machine while the main thread, waiting on
   * the network during a sync, sat half idle (measured: catch-up about 15% faster with two, ingest about 6%).
   */
  workers?: number
  /** Batches smaller than this are verified inline: a thread hop costs more than a few verifies. Default 8. */
  inlineBelow?: number
  /** Checks sent to a worker in one message. Default 64. */
  chunk?: number
}

interface Job {
  resolve(out: Uint8Array): void
  reject(err: Error): void
}

interface Slot {
  worker: Worker
  jobs: Map<number, Job>
}

// The worker is plain CommonJS evaluated from this string, so it runs the same under the compiled build and
// under the test runner's on-the-fly TypeScript, with no file path to resolve.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createPublicKey, verify } = require('node:crypto')
const SPKI = Buffer.from('302a300506032b6570032100', 'hex')
const keys = new Map()
parentPort.on('message', ({ id, pubs, msgs, sigs }) => {
  const out = new Uint8Array(msgs.length)
  for (let i = 0; i < msgs.length; i++) {
    const pub = pubs.subarray(i * 32, i * 32 + 32)
    const name = Buffer.from(pub).toString('latin1')
    let key = keys.get(name)
    if (!key) {
      key = createPublicKey({ key: Buffer.concat([SPKI, pub]), format: 'der', type: 'spki' })
      if (keys.size >= 10000) keys.clear()
      keys.set(name, key)
    }
    try {
      out[i] = verify(null, msgs[i], key, sigs.subarray(i * 64, i * 64 + 64)) ? 1 : 0
    } catch {
      out[i] = 0
    }
  }
  parentPort.postMessage({ id, out }, [out.buffer])
})
`

/**
 * Verifies on a pool of worker threads, so signature checking — the dominant cost of ingesting blocks — runs
 * beside the main thread's decoding and storing instead of in turn with it (Lodestar verifies its BLS
 * signatures the same way). Workers start on first use and are replaced if one dies.
 */
export class WorkerVerifier implements SignatureVerifier {
  private readonly size: number
  private readonly inlineBelow: number
  private readonly chunk: number
  private readonly inline = new InlineVerifier()
  private slots: (Slot | undefined)[] = []
  private nextJob = 1
  private nextSlot = 0
  private closed = false

  constructor(opts: WorkerVerifierOptions = {}) {
    this.size = Math.max(1, opts.workers ?? Math.max(2, availableParallelism() - 1))
    this.inlineBelow = opts.inlineBelow ?? 8
    this.chunk = opts.chunk ?? 64
  }

  async verifyMany(checks: SignatureCheck[]): Promise<boolean[]> {
    if (this.closed || checks.length < this.inlineBelow) return this.inline.verifyMany(checks)
    const parts: Promise<Uint8Array>[] = []
    for (let i = 0; i < checks.length; i += this.chunk) parts.push(this.send(checks.slice(i, i + this.chunk)))
    const results = await Promise.all(parts)
    const out: boolean[] = []
    for (const r of results) for (const v of r) out.push(v === 1)
    return out
  }

  async close(): Promise<void> {
    this.closed = true
    const slots = this.slots
    this.slots = []
    await Promise.all(slots.map((s) => s?.worker.terminate()))
  }

  private send(checks: SignatureCheck[]): Promise<Uint8Array> {
    const index = this.nextSlot++ % this.size
    const slot = this.slots[index] ?? this.spawn(index)
    const id = this.nextJob++
    const pubs = new Uint8Array(checks.length * 32)
    const sigs = new Uint8Array(checks.length * 64)
    const msgs: Uint8Array[] = []
    checks.forEach((c, i) => {
      // Wrong-length keys or signatures can never verify; zeros keep the layout fixed and fail in the worker.
      if (c.publicKey.length === 32) pubs.set(c.publicKey, i * 32)
      if (c.signature.length === 64) sigs.set(c.signature, i * 64)
      msgs.push(c.message)
    })
    return new Promise<Uint8Array>((resolve, reject) => {
      slot.jobs.set(id, {
        resolve: (out) => {
          // A malformed key or signature was zeroed above: report it invalid whatever the worker said.
          checks.forEach((c, i) => {
            if (c.publicKey.length !== 32 || c.signature.length !== 64) out[i] = 0
          })
          resolve(out)
        },
        reject,
      })
      if (slot.jobs.size === 1) slot.worker.ref()
      slot.worker.postMessage({ id, pubs, msgs, sigs })
    })
  }

  private spawn(index: number): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, name: `icn-verify-${index}` })
    const slot: Slot = { worker, jobs: new Map() }
    worker.unref()
    worker.on('message', ({ id, out }: { id: number; out: Uint8Array }) => {
      const job = slot.jobs.get(id)
      slot.jobs.delete(id)
      if (slot.jobs.size === 0) worker.unref()
      job?.resolve(out)
    })
    const fail = (err: Error): void => {
      if (this.slots[index] === slot) this.slots[index] = undefined
      for (const job of slot.jobs.values()) job.reject(err)
      slot.jobs.clear()
    }
    worker.on('error', (err) => fail(new VerifierUnavailableError(`signature worker failed: ${err.message}`)))
    worker.on('exit', (code) => fail(new VerifierUnavailableError(`signature worker exited (code ${code})`)))
    this.slots[index] = slot
    return slot
  }
}
