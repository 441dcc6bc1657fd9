import { readFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiClient, HTTP_STATUS_BY_CODE, routes } from '../../src/api/index.js'
import { type ApiNode, startApiNode } from '../helpers/node.js'
import { rawHttp, req } from '../helpers/raw-http.js'

/**
 * Every error the HTTP server can produce, over real sockets (raw bytes, so malformed requests fastify's
 * inject or fetch would refuse to send are sent as they are): each must be `{ code, message, requestId }`
 * with the status of the one table (src/api/errors.ts, docs/protocol.md) and the request id in x-request-id.
 */

const API_KEY = 'test-api-key-errors-0123'
const AUTH = `Authorization: Bearer ${API_KEY}`

let api: ApiNode
let port: number
let client: ApiClient

beforeAll(async () => {
  api = await startApiNode(API_KEY, 'icn-api-errors-')
  ;({ port, client } = api)
})

afterAll(async () => {
  await api?.stop()
})

const json = 'Content-Type: application/json'
const cid = 'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

/** The documented error table: `| \`CODE\`, \`CODE\` | status | when |` rows of docs/protocol.md. */
async function documentedStatuses(): Promise<Map<string, number>> {
  const text = await readFile(new URL('../../docs/protocol.md', import.meta.url), 'utf8')
  const section = text.slice(text.indexOf('## Error codes'), text.indexOf('## Federation genesis'))
  const out = new Map<string, number>()
  for (const line of section.split('\n')) {
    const m = /^\|([^|]+)\|\s*(\d{3})\s*\|/.exec(line)
    if (!m) continue
    for (const code of m[1]!.matchAll(/`([A-Z_]+)`/g)) out.set(code[1]!, Number(m[2]))
  }
  return out
}

const cases: { name: string; request: string; status: number; code: string; allow?: string }[] = [
  {
    name: 'bad percent-encoding in the path',
    request: req('GET', '/v1/dag/blocks/%ff%fe'),
    status: 400,
    code: 'INVALID_URL',
  },
  {
    name: 'a 5,000-character CID',
    request: req('GET', `/v1/dag/blocks/${'b'.repeat(5000)}`),
    status: 400,
    code: 'INVALID_CID',
  },
  {
    name: 'a 5,000-character CID to pin',
    request: req('PUT', `/v1/dag/pins/${'b'.repeat(5000)}`, [AUTH]),
    status: 400,
    code: 'INVALID_CID',
  },
  {
    name: 'a 5,000-character export root',
    request: req('GET', `/v1/dag/export?root=${'b'.repeat(5000)}`),
    status: 400,
    code: 'INVALID_CID',
  },
  {
    name: 'a URL over 64 KiB',
    request: req('GET', `/v1/dag/blocks/${'b'.repeat(70_000)}`),
    status: 431,
    code: 'REQUEST_HEADERS_TOO_LARGE',
  },
  {
    name: 'a header over 64 KiB',
    request: req('GET', '/v1/node', [`X-Big: ${'a'.repeat(70_000)}`]),
    status: 431,
    code: 'REQUEST_HEADERS_TOO_LARGE',
  },
  {
    name: 'a Content-Length that is not a number',
    request: req('POST', '/v1/dag/blocks', [AUTH, json, 'Content-Length: abc'], '{"value":1}'),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'two different Content-Lengths',
    request: req(
      'POST',
      '/v1/dag/blocks',
      [AUTH, json, 'Content-Length: 11', 'Content-Length: 12'],
      '{"value":1}',
    ),
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a request line that is not HTTP',
    request: 'HELLO THERE\r\n\r\n',
    status: 400,
    code: 'BAD_REQUEST',
  },
  {
    name: 'a text/plain body on a JSON route',
    request: req('POST', '/v1/dag/blocks', [AUTH, 'Content-Type: text/plain'], '{"value":1}'),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'a body with no content type on a JSON route',
    request: req('POST', '/v1/dag/blocks', [AUTH], '{"value":1}'),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'no body and no content type on a JSON route',
    request: req('POST', '/v1/dag/blocks', [AUTH, 'Content-Length: 0']),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'an XML body',
    request: req('POST', '/v1/dag/blocks', [AUTH, 'Content-Type: application/xml'], '<hi/>'),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'content-encoding: gzip',
    request: req('POST', '/v1/dag/blocks', [AUTH, json, 'Content-Encoding: gzip'], '\x1f\x8b\x08\x00'),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'JSON sent to the CAR import',
    request: req('POST', '/v1/dag/import', [AUTH, json], '{"value":1}'),
    status: 415,
    code: 'UNSUPPORTED_MEDIA_TYPE',
  },
  {
    name: 'a CAR import with an empty body',
    request: req('POST', '/v1/dag/import', [
      AUTH,
      'Content-Type: application/vnd.ipld.car',
      'Content-Length: 0',
    ]),
    status: 400,
    code: 'INVALID_CAR',
  },
  {
    name: 'malformed JSON',
    request: req('POST', '/v1/dag/blocks', [AUTH, json], '{"value":'),
    status: 400,
    code: 'INVALID_JSON',
  },
  {
    name: 'an empty JSON body',
    request: req('POST', '/v1/dag/blocks', [AUTH, json, 'Content-Length: 0']),
    status: 400,
    code: 'INVALID_JSON',
  },
  {
    name: 'a body of the wrong shape',
    request: req('POST', '/v1/dag/blocks', [AUTH, json], '{"x":1}'),
    status: 400,
    code: 'VALIDATION_FAILED',
  },
  {
    name: 'no API key',
    request: req('POST', '/v1/dag/blocks', [json], '{"value":1}'),
    status: 401,
    code: 'UNAUTHORIZED',
  },
  {
    name: 'DELETE on the blocks path',
    request: req('DELETE', '/v1/dag/blocks'),
    status: 405,
    code: 'METHOD_NOT_ALLOWED',
    allow: 'POST',
  },
  {
    name: 'GET on a pin',
    request: req('GET', `/v1/dag/pins/${cid}`),
    status: 405,
    code: 'METHOD_NOT_ALLOWED',
    allow: 'PUT, DELETE',
  },
  {
    name: 'POST on /health',
    request: req('POST', '/health', [json], '{}'),
    status: 405,
    code: 'METHOD_NOT_ALLOWED',
    allow: 'GET, HEAD',
  },
  {
    name: 'POST on a block',
    request: req('POST', `/v1/dag/blocks/${cid}`),
    status: 405,
    code: 'METHOD_NOT_ALLOWED',
    allow: 'GET, HEAD',
  },
  { name: 'an unknown path', request: req('GET', '/v1/nothing'), status: 404, code: 'ROUTE_NOT_FOUND' },
  {
    name: 'a known path with a trailing slash',
    request: req('GET', '/v1/node/'),
    status: 404,
    code: 'ROUTE_NOT_FOUND',
  },
  {
    name: 'a path only a regex would match',
    request: req('GET', '/openapiXjson'),
    status: 404,
    code: 'ROUTE_NOT_FOUND',
  },
  {
    name: 'OPTIONS on a known path',
    request: req('OPTIONS', '/v1/node'),
    status: 405,
    code: 'METHOD_NOT_ALLOWED',
    allow: 'GET, HEAD',
  },
  {
    name: 'a block that is not there',
    request: req('GET', `/v1/dag/blocks/${cid}`),
    status: 404,
    code: 'NOT_FOUND',
  },
]

describe('every HTTP error has the documented shape and status', () => {
  it.each(cases)('$name → $status $code', async ({ request, status, code, allow }) => {
    const res = await rawHttp(port, request)
    expect({ status: res.status, body: res.body }).toMatchObject({ status })
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    const body = JSON.parse(res.body) as Record<string, unknown>
    expect(body.code).toBe(code)
    expect(typeof body.message).toBe('string')
    expect((body.message as string).length).toBeGreaterThan(0)
    expect(typeof body.requestId).toBe('string')
    expect(res.headers['x-request-id']).toBe(body.requestId)
    expect(Object.keys(body).filter((k) => !['code', 'message', 'requestId', 'details'].includes(k))).toEqual(
      [],
    )
    // The status comes from the one table, and the table is the documented one.
    expect(HTTP_STATUS_BY_CODE[code]).toBe(status)
    expect((await documentedStatuses()).get(code)).toBe(status)
    if (allow) expect(res.headers.allow).toBe(allow)
  })

  it('documents every code of the status table, with the same status', async () => {
    const documented = await documentedStatuses()
    expect(Object.fromEntries(documented)).toEqual(HTTP_STATUS_BY_CODE)
  })

  it('the node still serves after all of that', async () => {
    expect((await client.call(routes.health)).status).toBe('ok')
  })
})

describe('__proto__ in a JSON body is data', () => {
  it('stores a value with a __proto__ key as an own property and reads it back, polluting nothing', async () => {
    const body = '{"value":{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}},"n":1}}'
    const res = await rawHttp(port, req('POST', '/v1/dag/blocks', [AUTH, json], body))
    expect(res.status, res.body).toBe(201)
    const { cid: stored } = JSON.parse(res.body) as { cid: string }
    const back = await rawHttp(port, req('GET', `/v1/dag/values/${stored}`))
    expect(back.status).toBe(200)
    // The raw reply text holds the key, and parsing it as data (own properties) gives the same value.
    const value = (JSON.parse(back.body) as { value: Record<string, unknown> }).value
    expect(Object.keys(value).sort()).toEqual(['__proto__', 'constructor', 'n'])
    expect(Object.getOwnPropertyDescriptor(value, '__proto__')?.value).toEqual({ polluted: true })
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(({} as Record<string, unknown>).x).toBeUndefined()
  })

  it('a top-level __proto__ key is an unknown field (400 VALIDATION_FAILED), not a parse failure', async () => {
    const res = await rawHttp(
      port,
      req('POST', '/v1/dag/blocks', [AUTH, json], '{"__proto__":{"a":1},"value":1}'),
    )
    expect(res.status).toBe(400)
    expect((JSON.parse(res.body) as { code: string }).code).toBe('VALIDATION_FAILED')
  })
})
