/**
 * Following a node's `/v1/events` (Server-Sent Events) in the benchmarks: each event's JSON handed to `onEvent`
 * as it arrives. Resolves once the stream is open; the stream runs until `signal` aborts it.
 */
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
  const res = await fetch(`${node.apiUrl}/v1/events`, { signal })
  if (!res.ok || !res.body) throw new Error(`${node.name}: /v1/events ${res.status}`)
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  void (async () => {
    let buf = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buf += value
      let end = buf.indexOf('\n\n')
      while (end >= 0) {
        const frame = buf.slice(0, end)
        buf = buf.slice(end + 2)
        end = buf.indexOf('\n\n')
        const data = frame.split('\n').find((l) => l.startsWith('data: '))
        if (data) onEvent(JSON.parse(data.slice(6)) as NodeEvent)
      }
    }
  })().catch(() => {})
}
