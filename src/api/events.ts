/**
 * Following a node's `GET /v1/events` (Server-Sent Events) from a client: `devnet up` watches its nodes connect
 * with it, the devnet demo and the benchmarks watch blocks and ledger changes arrive. Over `node:http`, not
 * fetch: `devnet up` runs it beside the nodes it starts, and fetch's first use alone loads and compiles undici.
 */
import http from 'node:http'

/**
 * Open `apiUrl`'s /v1/events and hand each event's JSON to `onEvent` as it arrives, with the time its chunk
 * arrived (`performance.now()`, so several streams read in one process compare). Resolves once the stream is
 * open, rejects if it cannot be opened; it then runs until `signal` aborts it or the node ends it, when `onEnd`
 * (if given) is called, unless it was aborted.
 */
export function followEvents<E = Record<string, unknown>>(
  apiUrl: string,
  signal: AbortSignal,
  onEvent: (event: E, arrivedAt: number) => void,
  onEnd?: () => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      `${apiUrl}/v1/events`,
      { signal, headers: { accept: 'text/event-stream' } },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume()
          reject(new Error(`${apiUrl}/v1/events: HTTP ${res.statusCode}`))
          return
        }
        resolve()
        res.setEncoding('utf8')
        let buf = ''
        res.on('data', (chunk: string) => {
          const at = performance.now()
          buf += chunk
          let end = buf.indexOf('\n\n')
          while (end >= 0) {
            const frame = buf.slice(0, end)
            buf = buf.slice(end + 2)
            end = buf.indexOf('\n\n')
            const data = frame.split('\n').find((l) => l.startsWith('data: '))
            if (data) onEvent(JSON.parse(data.slice(6)) as E, at)
          }
        })
        res.on('error', () => {}) // the node went away: 'close' follows
        res.once('close', () => {
          if (!signal.aborted) onEnd?.()
        })
      },
    )
    req.once('error', (err) => reject(err))
  })
}
