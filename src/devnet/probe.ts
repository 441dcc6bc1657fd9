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

function anySignal(timeoutMs: number, signal?: AbortSignal): AbortSignal {
  const t = AbortSignal.timeout(timeoutMs)
  return signal ? AbortSignal.any([t, signal]) : t
}

function why(err: unknown): string {
  const e = err as { name?: string; cause?: { code?: string }; message?: string }
  if (e.name === 'TimeoutError') return 'no answer'
  return e.cause?.code ?? e.message ?? String(err)
}

/** Ask a node whether it is ready and which peers it is connected to, each request within `timeoutMs`. */
export async function probeNode(
  apiUrl: string,
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<NodeProbe> {
  const timeoutMs = opts.timeoutMs ?? 1_000
  let status: number
  try {
    const res = await fetch(`${apiUrl}/ready`, { signal: anySignal(timeoutMs, opts.signal) })
    status = res.status
    await res.body?.cancel()
  } catch (err) {
    opts.signal?.throwIfAborted()
    return { ready: false, readyDetail: why(err), connected: [] }
  }
  if (status !== 200) return { ready: false, readyDetail: `/ready ${status}`, connected: [] }
  let connected: string[] = []
  let peersProblem: string | undefined
  try {
    const res = await fetch(`${apiUrl}/v1/peers`, {
      signal: anySignal(timeoutMs, opts.signal),
      headers: { accept: 'application/json' },
    })
    if (res.ok) {
      const body = (await res.json()) as PeersReply
      connected = (body.peers ?? [])
        .filter((p) => p.connected === true && typeof p.peerId === 'string')
        .map((p) => p.peerId as string)
    } else {
      peersProblem = `/v1/peers ${res.status}`
      await res.body?.cancel()
    }
  } catch (err) {
    opts.signal?.throwIfAborted()
    peersProblem = `/v1/peers: ${why(err)}`
  }
  return { ready: true, readyDetail: '/ready 200', connected, ...(peersProblem ? { peersProblem } : {}) }
}
