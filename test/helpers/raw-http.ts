import { connect } from 'node:net'

/** Raw HTTP/1.1 over a socket, for requests that fetch or fastify's inject would refuse to send as they are. */

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/** Parse one HTTP/1.1 response with a Content-Length (every reply this test expects has one). */
function parseResponse(buf: Buffer): RawResponse | undefined {
  const end = buf.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const i = line.indexOf(':')
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  const length = Number(headers['content-length'] ?? Number.NaN)
  if (!Number.isInteger(length) || buf.length < end + 4 + length) return undefined
  return {
    status: Number(statusLine!.split(' ')[1]),
    headers,
    body: buf.subarray(end + 4, end + 4 + length).toString('utf8'),
  }
}

/**
 * Send raw bytes and read the reply. The reply is taken as soon as it is complete, whether or not the server
 * closed the connection or read all that was sent.
 */
export function rawHttp(port: number, request: Buffer | string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let buf = Buffer.alloc(0)
    let done = false
    const finish = (r: RawResponse): void => {
      done = true
      socket.destroy()
      resolve(r)
    }
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      const r = parseResponse(buf)
      if (r && !done) finish(r)
    })
    socket.on('error', (err) => {
      if (!done) reject(err)
    })
    socket.on('close', () => {
      if (!done) reject(new Error(`connection closed without a complete reply: ${buf.toString('latin1')}`))
    })
    socket.write(request)
  })
}

/** A request with `Connection: close`, and a Content-Length for `body` unless `headers` give one. */
export function req(method: string, path: string, headers: string[] = [], body = ''): string {
  const head = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...headers]
  if (body && !headers.some((h) => /^content-length:/i.test(h)))
    head.push(`Content-Length: ${Buffer.byteLength(body)}`)
  return `${head.join('\r\n')}\r\n\r\n${body}`
}
