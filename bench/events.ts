/**
 * Following a node's `/v1/events` in the benchmarks (with the client's reader, src/api/events.ts): each event's
 * JSON handed to `onEvent` as it arrives. Resolves once the stream is open; the stream runs until `signal`
 * aborts it.
 */
import { followEvents as follow } from '../src/api/events.js'

export interface NodeEvent {
  type: string
  cid?: string
  index?: number
  kind?: string
  at: number
}

export async function followEvents(
  node: { name: string; apiUrl: string },
  signal: AbortSignal,
  onEvent: (ev: NodeEvent) => void,
): Promise<void> {
  await follow<NodeEvent>(node.apiUrl, signal, (ev) => onEvent(ev)).catch((err: Error) => {
    throw new Error(`${node.name}: ${err.message}`)
  })
}
