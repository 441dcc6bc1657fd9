import { EventEmitter } from 'node:events'

/** What a node sees, as `/v1/events` streams it. `at`: ms since the epoch, with a fraction (sub-ms precision). */
export type NodeEvent =
  | {
      type: 'block'
      cid: string
      kind: 'signed' | 'raw'
      chain?: string
      seq?: number
      author?: string
      /** Where it came from: local, http, import, gossip or sync. */
      origin: string
      /** The peer it came from (gossip, sync). */
      peer?: string
      at: number
    }
  | { type: 'evidence'; cid: string; chain?: string; seq?: number; origin: string; peer?: string; at: number }
  | { type: 'peer:connected' | 'peer:disconnected'; peerId: string; did: string; at: number }
  | {
      /** A ledger operation folded on this node (from any node's ledger chain). */
      type: 'ledger:transfer' | 'ledger:hold' | 'ledger:release' | 'ledger:settle'
      /** The ledger block and the op's index in it. */
      cid: string
      chain: string
      seq: number
      index: number
      /** The paying account (a transfer's or hold's member; for release/settle the hold). */
      from?: string
      to?: string
      amount?: number
      hold?: string
      /** `applied`, or the code that refused it. */
      outcome: string
      /** The block's time (ms). */
      ts: number
      at: number
    }

/** Most events a subscriber may have waiting before it is dropped (a client that stopped reading). */
export const MAX_LISTENERS = 1_000

/** One bus per node: modules publish, the events route and tests subscribe. */
export class EventBus {
  private readonly emitter = new EventEmitter<{ event: [NodeEvent] }>()
  private seq = 0

  constructor() {
    this.emitter.setMaxListeners(MAX_LISTENERS)
  }

  /** Whether anyone subscribes: a publisher may skip building events nobody reads. */
  get listening(): boolean {
    return this.emitter.listenerCount('event') > 0
  }

  /** Deliver to every subscriber now; a failing subscriber does not stop the others. */
  publish(event: NodeEvent): void {
    this.seq++
    for (const l of this.emitter.listeners('event') as ((e: NodeEvent, id: number) => void)[]) {
      try {
        l(event, this.seq)
      } catch {
        // a subscriber's failure is its own
      }
    }
  }

  /** Subscribe; returns the unsubscribe. The listener gets each event with its sequence number. */
  subscribe(listener: (event: NodeEvent, id: number) => void): () => void {
    const l = listener as (e: NodeEvent) => void
    this.emitter.on('event', l)
    return () => this.emitter.off('event', l)
  }

  get subscribers(): number {
    return this.emitter.listenerCount('event')
  }
}
