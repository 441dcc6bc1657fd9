import { describe, expect, it } from 'vitest'
import { MAX_BODY_DEPTH, parseJsonBody, parseJsonValue } from '../../../src/api/json-body.js'

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

function codeOf(raw: Uint8Array, opts?: Parameters<typeof parseJsonBody>[1]): string | undefined {
  try {
    parseJsonBody(raw, opts)
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}

describe('parseJsonBody', () => {
  it('parses JSON as JSON.parse does when nothing would change', () => {
    const text = '{"a":[1,-2,1.5,1e3,"x\\"[{9007199254740993",true,null],"b":{"c":"é😀"}}'
    expect(parseJsonBody(utf8(text))).toEqual(JSON.parse(text))
    expect(parseJsonBody(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('[1]')]))).toEqual([1])
  })

  it('counts depth outside strings only, up to the limit given', () => {
    const at = `${'['.repeat(MAX_BODY_DEPTH)}${']'.repeat(MAX_BODY_DEPTH)}`
    expect(codeOf(utf8(at))).toBeUndefined()
    expect(codeOf(utf8(`[${at}]`))).toBe('VALUE_TOO_DEEP')
    expect(codeOf(utf8(`{"a":{"b":1}}`), { maxDepth: 1 })).toBe('VALUE_TOO_DEEP')
    expect(codeOf(utf8(`{"a":"[[[[{{{{"}`), { maxDepth: 1 })).toBeUndefined()
  })

  it('refuses integer literals beyond ±(2^53 − 1), not numbers with a fraction or exponent', () => {
    for (const n of ['9007199254740992', '-9007199254740992', '123456789012345678901234567890'])
      expect(codeOf(utf8(`[${n}]`)), n).toBe('UNSAFE_INTEGER')
    for (const n of ['9007199254740991', '-9007199254740991', '0', '-0', '1e300', '12345678901234567890.5'])
      expect(codeOf(utf8(`[${n}]`)), n).toBeUndefined()
  })

  it('refuses invalid UTF-8 and lone surrogates: INVALID_UNICODE; bad JSON and empty bodies: INVALID_JSON', () => {
    expect(codeOf(Uint8Array.from([0x22, 0xff, 0x22]))).toBe('INVALID_UNICODE')
    // An encoded surrogate (CESU-8) is not UTF-8 either.
    expect(codeOf(Uint8Array.from([0x22, 0xed, 0xa0, 0x80, 0x22]))).toBe('INVALID_UNICODE')
    expect(codeOf(utf8('"\\ud800"'))).toBe('INVALID_UNICODE')
    expect(codeOf(utf8('{"\\udc00x":1}'))).toBe('INVALID_UNICODE')
    for (const bad of ['', '  ', '{', '[1,]', 'NaN', "{'a':1}"])
      expect(codeOf(utf8(bad)), bad).toBe('INVALID_JSON')
  })

  it('parseJsonValue (the CLI) takes a bare value of at most MAX_VALUE_DEPTH levels', () => {
    const d = MAX_BODY_DEPTH - 1
    expect(parseJsonValue(utf8(`${'['.repeat(d)}${']'.repeat(d)}`))).toBeDefined()
    expect(() => parseJsonValue(utf8(`${'['.repeat(d + 1)}${']'.repeat(d + 1)}`))).toThrow(/the value nests/)
  })

  it('keeps a __proto__ key as an ordinary own key', () => {
    const v = parseJsonBody(utf8('{"__proto__":{"x":1}}')) as Record<string, unknown>
    expect(Object.keys(v)).toEqual(['__proto__'])
    expect(({} as Record<string, unknown>).x).toBeUndefined()
  })
})
