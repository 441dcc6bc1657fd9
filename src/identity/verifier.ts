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
  verifyMany(checks: SignatureCheck[], options?: VerifyManyOptions): Promise<boolean[]>
  close(): Promise<void>
}

export interface VerifyManyOptions {
  /**
   * Batches smaller than this are verified on the calling thread (WorkerVerifier; default its `inlineBelow`).
   * 1 sends even a single check to a worker: slower for that one check, but it takes the verify off a busy main
   * thread (the API's record checks).
   */
  inlineBelow?: number
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
parentPort.on('message', ({ id, n, buf }) => {
  // One transferred buffer (see pack): n + 1 message offsets, n keys, n signatures, then the messages.
  const offsets = new Uint32Array(buf, 0, n + 1)
  const bytes = Buffer.from(buf)
  const pubsAt = 4 * (n + 1)
  const sigsAt = pubsAt + 32 * n
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) {
    const pub = bytes.subarray(pubsAt + i * 32, pubsAt + i * 32 + 32)
    const name = pub.toString('latin1')
    let key = keys.get(name)
    if (!key) {
      key = createPublicKey({ key: Buffer.concat([SPKI, pub]), format: 'der', type: 'spki' })
      if (keys.size >= 10000) keys.clear()
      keys.set(name, key)
    }
    try {
      const sig = bytes.subarray(sigsAt + i * 64, sigsAt + i * 64 + 64)
      out[i] = verify(null, bytes.subarray(offsets[i], offsets[i + 1]), key, sig) ? 1 : 0
    } catch {
      out[i] = 0
    }
  }
  parentPort.postMessage({ id, out }, [out.buffer])
})
`

/**
 * Checks packed into one ArrayBuffer, transferred to the worker rather than cloned: `n + 1` little-endian u32
 * message offsets, the `n` 32-byte keys, the `n` 64-byte signatures, then the messages end to end. Posting one
 * buffer costs the main thread a fraction of cloning an array of messages (measured: 4.6 against 24 µs for 20
 * checks). A key or signature of the wrong length is left as zeros, which never verify.
 */
function pack(checks: SignatureCheck[]): ArrayBuffer {
  const n = checks.length
  let size = 4 * (n + 1) + 96 * n
  for (const c of checks) size += c.message.length
  const buf = new ArrayBuffer(size)
  const offsets = new Uint32Array(buf, 0, n + 1)
  const bytes = new Uint8Array(buf)
  const pubsAt = 4 * (n + 1)
  const sigsAt = pubsAt + 32 * n
  let at = sigsAt + 64 * n
  for (let i = 0; i < n; i++) {
    const c = checks[i]!
    if (c.publicKey.length === 32) bytes.set(c.publicKey, pubsAt + i * 32)
    if (c.signature.length === 64) bytes.set(c.signature, sigsAt + i * 64)
    offsets[i] = at
    bytes.set(c.message, at)
    at += c.message.length
  }
  offsets[n] = at
  return buf
}

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

  async verifyMany(checks: SignatureCheck[], options: VerifyManyOptions = {}): Promise<boolean[]> {
    if (checks.length === 0) return []
    if (this.closed || checks.length < (options.inlineBelow ?? this.inlineBelow))
      return this.inline.verifyMany(checks)
    // Chunks of `chunk`, but a batch of fewer than `workers × chunk` is shared evenly by the workers: one worker
    // verifying a whole batch of 30 (about 2.7 ms) would leave the other idle and the caller waiting twice as long.
    const per = Math.min(this.chunk, Math.ceil(checks.length / this.size))
    const parts: Promise<Uint8Array>[] = []
    for (let i = 0; i < checks.length; i += per) parts.push(this.send(checks.slice(i, i + per)))
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
    const buf = pack(checks)
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
      slot.worker.postMessage({ id, n: checks.length, buf }, [buf])
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

export interface CoalescingVerifierOptions {
  /** Passed to `verifyMany` (default 1: every batch goes to the workers). */
  inlineBelow?: number
  /**
   * A batch that reaches this many checks goes at once instead of at the end of the turn (default 16): the
   * workers start on it while the rest of the turn's requests are read. Measured on the ledger bench (2 cores):
   * the node's event loop went from 85% to 97% busy, and transfers/s up 3–7%.
   */
  flushAt?: number
}

/**
 * How a check was answered: a verify that passed, a verify that failed, or (for callers that remember what they
 * verified, like the ledger's fold) an answer remembered from an earlier verify of the same thing.
 */
export type CheckResult = 'verified' | 'cached' | 'invalid'

/**
 * One signature at a time for the caller, many at a time for the verifier: checks asked for during one turn of
 * the event loop go to `verifier.verifyMany` together on the next (`setImmediate`), or as soon as `flushAt` of
 * them wait, so a burst of API requests becomes a few batches on the worker threads instead of one verify each on
 * the main thread. The answer is the
 * verifier's (the same `node:crypto` verify wherever it runs). If the workers fail (VerifierUnavailableError),
 * the batch is verified on this thread instead: same answer, no error for the caller.
 */
export class CoalescingVerifier {
  private pending: { check: SignatureCheck; resolve(result: 'verified' | 'invalid'): void }[] = []
  private scheduled = false
  private readonly inline = new InlineVerifier()

  constructor(
    private readonly verifier: SignatureVerifier,
    private readonly opts: CoalescingVerifierOptions = {},
  ) {}

  /** Whether the check verifies. */
  check(check: SignatureCheck): Promise<'verified' | 'invalid'> {
    return new Promise((resolve) => {
      this.pending.push({ check, resolve })
      if (this.pending.length >= (this.opts.flushAt ?? 16)) {
        void this.flush()
        return
      }
      if (this.scheduled) return
      this.scheduled = true
      setImmediate(() => {
        this.scheduled = false
        void this.flush()
      })
    })
  }

  private async flush(): Promise<void> {
    const batch = this.pending
    this.pending = []
    if (batch.length === 0) return
    const checks = batch.map((p) => p.check)
    let ok: boolean[]
    try {
      ok = await this.verifier.verifyMany(checks, { inlineBelow: this.opts.inlineBelow ?? 1 })
    } catch {
      ok = await this.inline.verifyMany(checks)
    }
    for (const [i, p] of batch.entries()) p.resolve(ok[i] === true ? 'verified' : 'invalid')
  }
}
