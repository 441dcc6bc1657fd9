/**
 * Following a node's `GET /v1/events` (Server-Sent Events) from a client: the devnet demo and the benchmarks
 * watch blocks and ledger changes arrive with it.
 */

/**
 * Open `apiUrl`'s /v1/events and hand each event's JSON to `onEvent` as it arrives, with the time its chunk
 * arrived (`performance.now()`, so several streams read in one process compare). Resolves once the stream is
 * open, rejects if it cannot be opened; it then runs until `signal` aborts it or the node ends it.
 */
export async function followEvents<E = Record<string, unknown>>(
  apiUrl: string,
  signal: AbortSignal,
  onEvent: (event: E, arrivedAt: number) => void,
): Promise<void> {
  const res = await fetch(`${apiUrl}/v1/events`, { signal })
  if (!res.ok || !res.body) throw new Error(`${apiUrl}/v1/events: HTTP ${res.status}`)
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  void (async () => {
    let buf = ''
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      const at = performance.now()
      buf += value
      let end = buf.indexOf('\n\n')
      while (end >= 0) {
        const frame = buf.slice(0, end)
        buf = buf.slice(end + 2)
        end = buf.indexOf('\n\n')
        const data = frame.split('\n').find((l) => l.startsWith('data: '))
        if (data) onEvent(JSON.parse(data.slice(6)) as E, at)
      }
    }
  })().catch(() => {}) // aborted, or the node went away: the stream ends
}
