import http from 'node:http'

/** What one look at a node's HTTP API found. */
export interface NodeProbe {
  /** GET /ready answered 200. */
  ready: boolean
  /** The /ready status, or the reason it could not be asked (e.g. `ECONNREFUSED`). */
  readyDetail: string
  /** Peer ids the node lists as connected (GET /v1/peers); empty when not ready or not answering. */
  connected: string[]
  /** Why `connected` could not be read (e.g. `/v1/peers 404`), if it could not. */
  peersProblem?: string
}

interface PeersReply {
  peers?: { peerId?: unknown; connected?: unknown }[]
}

/** Connections kept open between looks: `devnet up` asks every node twice per look until all are connected. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 2 })

class ProbeError extends Error {
  constructor(readonly reason: string) {
    super(reason)
  }
}

/**
 * GET `url` (node:http, not fetch: `devnet up` looks at every node several times a second while they start,
 * and fetch's first use alone loads and compiles undici). Resolves with the status and, for 200, the body.
 */
function get(
  url: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ status: number; body?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers: { accept: 'application/json' }, signal }, (res) => {
      if (res.statusCode !== 200) {
        res.resume()
        resolve({ status: res.statusCode ?? 0 })
        return
      }
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: 200, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', (err) => reject(new ProbeError(err.message)))
    })
    req.setTimeout(timeoutMs, () => req.destroy(new ProbeError('no answer')))
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(err instanceof ProbeError ? err : new ProbeError(err.code ?? err.message)),
    )
  })
}

function why(err: unknown): string {
  return err instanceof ProbeError ? err.reason : ((err as Error).message ?? String(err))
}

/** Ask a node whether it is ready and which peers it is connected to, each request within `timeoutMs`. */
export async function probeNode(
  apiUrl: string,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<NodeProbe> {
  const timeoutMs = opts.timeoutMs ?? 1_000
  let status: number
  try {
    status = (await get(`${apiUrl}/ready`, timeoutMs, opts.signal)).status
  } catch (err) {
    opts.signal?.throwIfAborted()
    return { ready: false, readyDetail: why(err), connected: [] }
  }
  if (status !== 200) return { ready: false, readyDetail: `/ready ${status}`, connected: [] }
  let connected: string[] = []
  let peersProblem: string | undefined
  try {
    const res = await get(`${apiUrl}/v1/peers`, timeoutMs, opts.signal)
    if (res.status === 200) {
      const body = JSON.parse(res.body ?? '') as PeersReply
      connected = (body.peers ?? [])
        .filter((p) => p.connected === true && typeof p.peerId === 'string')
        .map((p) => p.peerId as string)
    } else {
      peersProblem = `/v1/peers ${res.status}`
    }
  } catch (err) {
    opts.signal?.throwIfAborted()
    peersProblem = `/v1/peers: ${why(err)}`
  }
  return { ready: true, readyDetail: '/ready 200', connected, ...(peersProblem ? { peersProblem } : {}) }
}
