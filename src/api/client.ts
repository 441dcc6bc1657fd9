import { ApiError } from './errors.js'
import type { BodyOf, ParamsOf, QueryOf, ResponseOf, RouteDef } from './routes.js'

export interface ApiClientOptions {
  /** Base URL of the node's API, e.g. http://127.0.0.1:7420 */
  baseUrl: string
  apiKey?: string
  /** Per-request timeout (default 60 s). */
  timeoutMs?: number
}

export interface CallInput<R extends RouteDef> {
  params?: ParamsOf<R>
  query?: QueryOf<R>
  body?: BodyOf<R>
  /** Binary body for routes with `requestContentType`. */
  rawBody?: Uint8Array
  /** Statuses besides 2xx whose JSON body is returned rather than thrown (e.g. 503 from /ready). */
  okStatuses?: number[]
  signal?: AbortSignal
  headers?: Record<string, string>
}

/**
 * Typed client of the node's HTTP API, driven by the same route definitions as the server: the CLI uses it for
 * every command that talks to a node. Failures throw ApiError with the server's `code` (or NODE_UNREACHABLE).
 */
export class ApiClient {
  readonly baseUrl: string
  constructor(private readonly opts: ApiClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '')
  }

  /** Call a JSON route and return its typed reply. */
  async call<R extends RouteDef>(route: R, input: CallInput<R> = {}): Promise<ResponseOf<R>> {
    const res = await this.fetch(route, input)
    const ok = res.ok || (input.okStatuses ?? []).includes(res.status)
    if (!ok) throw await errorFrom(res)
    const text = await res.text()
    try {
      return JSON.parse(text) as ResponseOf<R>
    } catch {
      return text as ResponseOf<R>
    }
  }

  /** Call a route and return the raw Response (binary replies such as CAR streams and block bytes). */
  async fetch<R extends RouteDef>(route: R, input: CallInput<R> = {}): Promise<Response> {
    const url = this.url(route, input)
    const headers: Record<string, string> = { accept: 'application/json', ...input.headers }
    if (route.auth && this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`
    let body: Uint8Array | string | undefined
    if (input.rawBody) {
      headers['content-type'] = route.requestContentType ?? 'application/octet-stream'
      body = input.rawBody
    } else if (input.body !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(input.body)
    }
    const signals = [AbortSignal.timeout(this.opts.timeoutMs ?? 60_000)]
    if (input.signal) signals.push(input.signal)
    const res = await fetch(url, {
      method: route.method,
      headers,
      body,
      signal: AbortSignal.any(signals),
    }).catch((err: unknown) => {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause
      const why = cause?.code ?? cause?.message ?? (err as Error).message
      throw new ApiError(0, 'NODE_UNREACHABLE', `cannot reach the node at ${this.baseUrl}: ${why}`)
    })
    if (!res.ok && !(input.okStatuses ?? []).includes(res.status) && !isJsonRoute(route))
      throw await errorFrom(res)
    return res
  }

  private url<R extends RouteDef>(route: R, input: CallInput<R>): string {
    const params = (input.params ?? {}) as Record<string, string>
    const path = route.url.replace(/:([A-Za-z_]+)/g, (_m, name: string) => {
      const v = params[name]
      if (v === undefined) throw new Error(`route ${route.id} needs parameter ${name}`)
      return encodeURIComponent(v)
    })
    const q = new URLSearchParams()
    for (const [k, v] of Object.entries((input.query ?? {}) as Record<string, unknown>))
      if (v !== undefined) q.set(k, String(v))
    const qs = q.toString()
    return `${this.baseUrl}${path}${qs ? `?${qs}` : ''}`
  }
}

function isJsonRoute(route: RouteDef): boolean {
  return !route.responseContentType
}

async function errorFrom(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '')
  try {
    const body = JSON.parse(text) as { code?: string; message?: string; details?: Record<string, unknown> }
    if (body.code) return new ApiError(res.status, body.code, body.message ?? body.code, body.details)
  } catch {}
  return new ApiError(res.status, `HTTP_${res.status}`, text.slice(0, 300) || res.statusText)
}
