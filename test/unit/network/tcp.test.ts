import net from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { MultiaddrConnection } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2p } from 'libp2p'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { coalesceWrites, coalescingTcp, MAX_JOINED_BYTES } from '../../../src/network/tcp.js'

/** A connection's `send`, recorded. */
function fakeConnection(): { maConn: MultiaddrConnection; sent: unknown[] } {
  const sent: unknown[] = []
  const maConn = {
    send(data: unknown) {
      sent.push(data)
      return sent.length < 3
    },
  } as unknown as MultiaddrConnection
  return { maConn, sent }
}

describe('coalesceWrites', () => {
  it('joins a list of buffers into one, with the same bytes, and keeps the backpressure answer', () => {
    const { maConn, sent } = fakeConnection()
    coalesceWrites(maConn)
    const list = new Uint8ArrayList(Uint8Array.of(0, 3), Uint8Array.of(7, 8), Uint8Array.of(9))
    expect(maConn.send(list)).toBe(true)
    expect(sent).toHaveLength(1)
    expect(sent[0]).toBeInstanceOf(Uint8Array)
    expect([...(sent[0] as Uint8Array)]).toEqual([0, 3, 7, 8, 9])
    const one = Uint8Array.of(1, 2, 3)
    expect(maConn.send(one)).toBe(true)
    expect(sent[1]).toBe(one) // a single buffer goes as it is, not copied
    expect(maConn.send(new Uint8ArrayList(one))).toBe(false) // the inner send's answer: wait for drain
    expect(sent[2]).toBe(one)
  })

  it('passes a list longer than one Noise message on as it is (no copy of a bulk write)', () => {
    const { maConn, sent } = fakeConnection()
    coalesceWrites(maConn)
    const atLimit = new Uint8ArrayList(new Uint8Array(2), new Uint8Array(MAX_JOINED_BYTES - 2))
    maConn.send(atLimit)
    expect(sent[0]).toBeInstanceOf(Uint8Array)
    expect((sent[0] as Uint8Array).byteLength).toBe(MAX_JOINED_BYTES)
    const bulk = new Uint8ArrayList(new Uint8Array(2), new Uint8Array(MAX_JOINED_BYTES - 1))
    maConn.send(bulk)
    expect(sent[1]).toBe(bulk)
  })
})

describe('coalescingTcp', () => {
  const nodes: Libp2p[] = []
  afterEach(async () => {
    vi.restoreAllMocks()
    await Promise.all(nodes.splice(0).map((n) => n.stop()))
  })

  async function host(transport: typeof tcp): Promise<Libp2p<{ ping: ReturnType<ReturnType<typeof ping>> }>> {
    const node = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [transport()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionMonitor: { enabled: false },
      services: { ping: ping() },
    })
    nodes.push(node)
    return node
  }

  /** Socket writes made while `a` pings `b` over a fresh stream of their open connection. */
  async function writesOfPing(transport: typeof tcp): Promise<number[]> {
    const a = await host(transport)
    const b = await host(transport)
    await a.dial(b.getMultiaddrs()[0]!)
    await a.services.ping.ping(b.peerId) // the first stream: ping protocol negotiated once
    const sizes: number[] = []
    const write = net.Socket.prototype.write
    // Only the two hosts' sockets (both ends of the connection to b's port), not stdout or any other of this process.
    const port = Number(
      b
        .getMultiaddrs()[0]!
        .getComponents()
        .find((c) => c.name === 'tcp')!.value,
    )
    vi.spyOn(net.Socket.prototype, 'write').mockImplementation(function (
      this: net.Socket,
      ...args: Parameters<net.Socket['write']>
    ) {
      const chunk = args[0]
      if (this.remotePort === port || this.localPort === port)
        sizes.push(typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Uint8Array).byteLength)
      return write.apply(this, args)
    })
    const rtt = await a.services.ping.ping(b.peerId)
    vi.restoreAllMocks()
    expect(rtt).toBeGreaterThanOrEqual(0)
    return sizes
  }

  it('dials, listens and carries streams like tcp(), writing each Noise message in one piece', async () => {
    const sizes = await writesOfPing(coalescingTcp)
    expect(sizes.length).toBeGreaterThan(0)
    // A Noise message is its 2-byte length, then the ciphertext (with its 16-byte tag): never apart.
    expect(sizes.filter((n) => n <= 16)).toEqual([])
  })

  it('the check above fails on plain tcp(), which writes the 2-byte length on its own', async () => {
    const sizes = await writesOfPing(tcp)
    expect(sizes).toContain(2)
  })
})
