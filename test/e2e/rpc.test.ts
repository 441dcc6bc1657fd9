import * as dagCbor from '@ipld/dag-cbor'
import { memory } from '@libp2p/memory'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IcnError, Signer } from '../../src/identity/index.js'
import {
  createHost,
  type IcnLibp2p,
  libp2pKeyFor,
  RPC_PROTOCOL,
  type RpcPeer,
} from '../../src/network/index.js'
import { type Harness, startHarness, until } from '../helpers/harness.js'

/**
 * The node-to-node RPC between IcnNodes of the in-process harness, and a raw libp2p host holding a node key of
 * the federation that speaks the RPC wire by hand (garbage, oversized frames).
 */

const MAX = 65_536 // the federation's maxMessageBytes (its minimum)

let h: Harness
const rogue = Signer.generate()
let host: IcnLibp2p | undefined

/** The error a promise rejects with (fails the test if it resolves). */
async function failure(p: Promise<unknown>): Promise<IcnError & { remote?: boolean }> {
  try {
    await p
  } catch (err) {
    return err as IcnError & { remote?: boolean }
  }
  throw new Error('expected a rejection')
}

async function metric(i: number, series: string): Promise<number> {
  const text = await h.node(i).metrics.registry.metrics()
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  return 0
}

beforeAll(async () => {
  h = await startHarness({ nodes: 3, extra: [rogue], parameters: { maxMessageBytes: MAX } })
  await h.waitConnected()
})

afterAll(async () => {
  await host?.stop()
  await h?.close()
})

describe('RPC between nodes', () => {
  it('round-trips a DAG-CBOR message, tells the handler who asked, and counts both sides', async () => {
    const seen: { from: RpcPeer; requestId: string }[] = []
    const off = h.network(1).handle('test/echo/1', async (message, from, { requestId }) => {
      seen.push({ from, requestId })
      return { echo: message, bytes: new Uint8Array([1, 2, 3]) }
    })
    try {
      const msg = { n: 42, list: ['a', { b: true }], nothing: null }
      expect(await h.network(0).request(h.nodes[1]!.did, 'test/echo/1', msg)).toEqual({
        echo: msg,
        bytes: new Uint8Array([1, 2, 3]),
      })
      // many in a row and at once: all answered, in any order
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          h.network(0).request(h.nodes[1]!.did, 'test/echo/1', i, { requestId: `req-${i}` }),
        ),
      )
      expect(replies.map((r) => (r as { echo: number }).echo)).toEqual(
        Array.from({ length: 20 }, (_, i) => i),
      )
      expect(seen[0]!.from).toEqual({ did: h.nodes[0]!.did, peerId: h.nodes[0]!.peerId })
      expect(seen.map((s) => s.requestId)).toContain('req-7')
      expect(await metric(0, 'icn_rpc_requests_total{protocol="test/echo/1",outcome="ok"}')).toBe(21)
      expect(await metric(1, 'icn_rpc_handled_total{protocol="test/echo/1",outcome="ok"}')).toBe(21)
      expect(await metric(0, 'icn_rpc_request_seconds_count{protocol="test/echo/1"}')).toBe(21)
    } finally {
      off()
    }
  })

  it('answers a request to its own DID with its own handlers', async () => {
    const offs = [
      h.network(0).handle('test/self/1', async (m, from) => ({ m, from: from.did })),
      h.network(0).handle('test/self-typed/1', async () => {
        throw new IcnError('RECORD_REPLAYED', 'seen before', { details: { nonce: 7 } })
      }),
      // ignores its signal: the caller's deadline still holds
      h.network(0).handle('test/self-hang/1', () => new Promise(() => {})),
    ]
    try {
      expect(await h.network(0).request(h.nodes[0]!.did, 'test/self/1', 'hi')).toEqual({
        m: 'hi',
        from: h.nodes[0]!.did,
      })
      const typed = await failure(h.network(0).request(h.nodes[0]!.did, 'test/self-typed/1', null))
      expect([typed.code, typed.message, typed.details]).toEqual([
        'RECORD_REPLAYED',
        'seen before',
        { nonce: 7 },
      ])
      const hang = await failure(
        h.network(0).request(h.nodes[0]!.did, 'test/self-hang/1', 1, { timeoutMs: 50 }),
      )
      expect(hang.code).toBe('RPC_TIMEOUT')
    } finally {
      for (const off of offs) off()
    }
  })

  it("gives the caller a handler's typed error with its code, message and details; hides any other", async () => {
    class InsufficientManaError extends IcnError {
      constructor() {
        super('INSUFFICIENT_MANA', 'balance 3 is below 5', { details: { balance: 3, amount: 5 } })
      }
    }
    const offs = [
      h.network(2).handle('test/typed/1', async () => {
        throw new InsufficientManaError()
      }),
      h.network(2).handle('test/crash/1', async () => {
        throw new TypeError('secret internal path /etc/x')
      }),
      // details DAG-CBOR cannot hold (undefined) are left out, not the error
      h.network(2).handle('test/odd-details/1', async () => {
        throw new IcnError('RECORD_EXPIRED', 'expired', { details: { at: undefined } })
      }),
    ]
    try {
      const typed = await failure(h.network(0).request(h.nodes[2]!.did, 'test/typed/1', {}))
      expect(typed).toBeInstanceOf(IcnError)
      expect(typed.code).toBe('INSUFFICIENT_MANA')
      expect(typed.message).toBe('balance 3 is below 5')
      expect(typed.details).toEqual({ balance: 3, amount: 5 })
      expect(typed.remote).toBe(true)

      const odd = await failure(h.network(0).request(h.nodes[2]!.did, 'test/odd-details/1', {}))
      expect([odd.code, odd.message, odd.details]).toEqual(['RECORD_EXPIRED', 'expired', undefined])

      const crash = await failure(h.network(0).request(h.nodes[2]!.did, 'test/crash/1', {}))
      expect(crash.code).toBe('RPC_REMOTE_ERROR')
      expect(crash.message).not.toMatch(/secret|TypeError/)
      expect(await metric(2, 'icn_rpc_handled_total{protocol="test/crash/1",outcome="error"}')).toBe(1)
      expect(await metric(0, 'icn_rpc_requests_total{protocol="test/typed/1",outcome="remote_error"}')).toBe(
        1,
      )
    } finally {
      for (const off of offs) off()
    }
  })

  it('times out with RPC_TIMEOUT, and the handler is told to stop', async () => {
    let handlerAborted!: () => void
    const aborted = new Promise<void>((r) => {
      handlerAborted = r
    })
    const off = h.network(1).handle('test/slow/1', (_m, _f, { signal }) => {
      signal.addEventListener('abort', () => handlerAborted())
      return new Promise(() => {}) // never answers
    })
    try {
      const err = await failure(h.network(0).request(h.nodes[1]!.did, 'test/slow/1', 1, { timeoutMs: 200 }))
      expect(err.code).toBe('RPC_TIMEOUT')
      await aborted // the server-side signal follows the caller's timeout
      // the peer's next request gets a fresh stream and is answered
      const off2 = h.network(1).handle('test/fast/1', async () => 'ok')
      expect(await h.network(0).request(h.nodes[1]!.did, 'test/fast/1', null)).toBe('ok')
      off2()
    } finally {
      off()
    }
  })

  it('refuses a message over the limit before sending it, and one over the protocol limit at the remote', async () => {
    let calls = 0
    const offs = [
      h.network(1).handle(
        'test/small/1',
        async () => {
          calls++
          return 'ok'
        },
        { maxMessageBytes: 1_024 },
      ),
      h.network(1).handle('test/bigreply/1', async () => new Uint8Array(2_000), { maxReplyBytes: 1_024 }),
    ]
    try {
      const local = await failure(h.network(0).request(h.nodes[1]!.did, 'test/small/1', new Uint8Array(MAX)))
      expect(local.code).toBe('MESSAGE_TOO_LARGE')
      expect(local.remote).toBeUndefined()
      const remote = await failure(
        h.network(0).request(h.nodes[1]!.did, 'test/small/1', new Uint8Array(2_000)),
      )
      expect(remote.code).toBe('MESSAGE_TOO_LARGE')
      expect(remote.remote).toBe(true)
      expect(calls).toBe(0)
      expect(await h.network(0).request(h.nodes[1]!.did, 'test/small/1', new Uint8Array(10))).toBe('ok')
      const reply = await failure(h.network(0).request(h.nodes[1]!.did, 'test/bigreply/1', null))
      expect(reply.code).toBe('MESSAGE_TOO_LARGE')
      expect(reply.details).toMatchObject({ what: 'reply' })
    } finally {
      for (const off of offs) off()
    }
  })

  it('says UNKNOWN_PROTOCOL when the remote has no handler, also once one is removed', async () => {
    const err = await failure(h.network(0).request(h.nodes[1]!.did, 'test/nobody/1', 1))
    expect(err.code).toBe('UNKNOWN_PROTOCOL')
    const off = h.network(1).handle('test/gone/1', async () => 'here')
    expect(await h.network(0).request(h.nodes[1]!.did, 'test/gone/1', 1)).toBe('here')
    off()
    expect((await failure(h.network(0).request(h.nodes[1]!.did, 'test/gone/1', 1))).code).toBe(
      'UNKNOWN_PROTOCOL',
    )
  })

  it('aborts with ABORTED on the caller’s signal, before and during the request', async () => {
    let started!: () => void
    const running = new Promise<void>((r) => {
      started = r
    })
    const off = h.network(1).handle('test/hang/1', () => {
      started()
      return new Promise(() => {})
    })
    try {
      const pre = new AbortController()
      pre.abort()
      const before = await failure(
        h.network(0).request(h.nodes[1]!.did, 'test/hang/1', 1, { signal: pre.signal }),
      )
      expect(before.code).toBe('ABORTED')
      const ctl = new AbortController()
      const p = h.network(0).request(h.nodes[1]!.did, 'test/hang/1', 1, { signal: ctl.signal })
      await running
      ctl.abort()
      expect((await failure(p)).code).toBe('ABORTED')
    } finally {
      off()
    }
  })

  it('refuses bad calls with typed errors: a DID that is no node, bad names, a second handler', async () => {
    const stranger = Signer.generate().did
    const e1 = await failure(h.network(0).request(stranger, 'test/echo/1', 1))
    expect(e1.code).toBe('PEER_UNREACHABLE')
    expect(e1.details).toMatchObject({ reason: 'not_a_node' })
    expect((await failure(h.network(0).request(h.nodes[1]!.did, 'bad name', 1))).code).toBe('RPC_MALFORMED')
    expect((await failure(h.network(0).request(h.nodes[1]!.did, 'test/x/1', () => 1))).code).toBe(
      'RPC_MALFORMED',
    )
    const off = h.network(1).handle('test/once/1', async () => 1)
    expect(() => h.network(1).handle('test/once/1', async () => 2)).toThrow(
      expect.objectContaining({ code: 'RPC_HANDLER_INVALID' }),
    )
    expect(() => h.network(1).handle('', async () => 2)).toThrow(
      expect.objectContaining({ code: 'RPC_HANDLER_INVALID' }),
    )
    off()
  })

  it('says PEER_UNREACHABLE for a federation node that is down, and reaches it again once it is back', async () => {
    const stopped = h.network(2)
    await h.partition(2)
    try {
      // the stopped node's own network refuses to send
      const own = await failure(stopped.request(h.nodes[0]!.did, 'test/echo/1', 1))
      expect([own.code, own.details?.reason]).toEqual(['PEER_UNREACHABLE', 'not_started'])
      const err = await failure(h.network(0).request(h.nodes[2]!.did, 'test/echo/1', 1, { timeoutMs: 5_000 }))
      expect(err.code).toBe('PEER_UNREACHABLE')
    } finally {
      await h.heal(2)
    }
    const off = h.network(2).handle('test/back/1', async () => 'back')
    expect(await h.network(0).request(h.nodes[2]!.did, 'test/back/1', 1)).toBe('back')
    off()
  })
})

describe('RPC to a node that is not connected', () => {
  it('dials it on demand', async () => {
    // b restarts; a (whose peer id sorts after b's) is re-dialed by b only after a start delay, and a re-dials
    // b only after a back-off: neither passes while the shared manual clock stands still.
    const ids = [0, 1, 2].sort((x, y) => (h.nodes[x]!.peerId < h.nodes[y]!.peerId ? -1 : 1))
    const b = ids[0]!
    const a = ids[2]!
    await h.stop(b)
    await until('a to see b gone', async () => {
      const p = (await h.network(a).peers()).find((x) => x.did === h.nodes[b]!.did)
      return p?.connected === false
    })
    await h.restart(b)
    const off = h.network(b).handle('test/dial/1', async (m) => m)
    try {
      const before = (await h.network(a).peers()).find((x) => x.did === h.nodes[b]!.did)
      expect(before?.connected).toBe(false)
      expect(await h.network(a).request(h.nodes[b]!.did, 'test/dial/1', 'reached')).toBe('reached')
    } finally {
      off()
      await h.waitConnected()
    }
  })
})

describe('RPC from a peer that breaks the protocol', () => {
  it('answers garbage with RPC_MALFORMED, counts it against the peer, and drops a stream with an oversized frame', async () => {
    const target = h.nodes[0]!
    host = await createHost({
      privateKey: libp2pKeyFor(rogue),
      listen: [],
      allowed: new Set(h.nodes.map((n) => n.peerId)),
      topic: `/icn/${h.federation.id}/blocks/1`,
      transports: [memory()],
    })
    await host.start()
    const lp = lpStream(await host.dialProtocol(multiaddr(target.addr), RPC_PROTOCOL))
    const misbehaviour = async (): Promise<number> =>
      (await h.network(0).peers()).find((p) => p.did === rogue.did)?.misbehaviour ?? 0

    const exchange = async (bytes: Uint8Array): Promise<Record<string, unknown>> => {
      await lp.write(bytes)
      return dagCbor.decode((await lp.read()).subarray()) as Record<string, unknown>
    }
    // not CBOR at all
    const r1 = await exchange(new Uint8Array([0xff, 0x00, 0x13]))
    expect((r1.e as { code: string }).code).toBe('RPC_MALFORMED')
    // CBOR, but not an envelope
    const r2 = await exchange(dagCbor.encode({ v: 2, hello: 'x' }))
    expect((r2.e as { code: string }).code).toBe('RPC_MALFORMED')
    // nested past the depth limit: refused before decoding
    let deep: unknown = 1
    for (let i = 0; i < 200; i++) deep = [deep]
    const r3 = await exchange(dagCbor.encode({ v: 1, id: 3, p: 'test/echo/1', m: deep }))
    expect((r3.e as { code: string }).code).toBe('RPC_MALFORMED')
    expect(await misbehaviour()).toBe(3)
    expect(await metric(0, 'icn_peer_misbehaviour_total{reason="malformed"}')).toBe(3)
    // a well-formed request on the same stream is still answered
    const off = h.network(0).handle('test/rogue/1', async (m) => m)
    const ok = await exchange(dagCbor.encode({ v: 1, id: 9, p: 'test/rogue/1', m: 'fine' }))
    expect(ok).toEqual({ v: 1, id: 9, r: 'fine' })
    off()

    // a frame over the stream's limit: the stream is dropped and the peer counted
    const big = lpStream(await host.dialProtocol(multiaddr(target.addr), RPC_PROTOCOL))
    await big.write(new Uint8Array(MAX + 1))
    await expect(big.read()).rejects.toThrow()
    await until('the oversized frame to be counted', async () => (await misbehaviour()) === 4)
    expect(await metric(0, 'icn_peer_misbehaviour_total{reason="oversized"}')).toBe(1)

    // As a server: a reply to another request id, then one over the caller's limit; each counted against it
    let mode: 'wrong-id' | 'huge' = 'wrong-id'
    await host.handle(RPC_PROTOCOL, async (stream) => {
      const rpc = lpStream(stream)
      try {
        for (;;) {
          const req = dagCbor.decode((await rpc.read()).subarray()) as { id: number }
          await rpc.write(
            dagCbor.encode(
              mode === 'wrong-id'
                ? { v: 1, id: req.id + 1, r: 'x' }
                : { v: 1, id: req.id, r: new Uint8Array(MAX + 10) },
            ),
          )
        }
      } catch {
        stream.abort(new Error('done'))
      }
    })
    const wrong = await failure(h.network(0).request(rogue.did, 'test/any/1', 1))
    expect(wrong.code).toBe('RPC_MALFORMED')
    expect(await misbehaviour()).toBe(5)
    mode = 'huge'
    const huge = await failure(h.network(0).request(rogue.did, 'test/any/1', 1))
    expect(huge.code).toBe('MESSAGE_TOO_LARGE')
    expect(huge.details).toMatchObject({ what: 'reply' })
    expect(await misbehaviour()).toBe(6)
  })
})
