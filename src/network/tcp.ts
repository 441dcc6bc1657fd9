import type {
  CreateListenerOptions,
  DialTransportOptions,
  Listener,
  MultiaddrConnection,
  Transport,
  Upgrader,
} from '@libp2p/interface'
import { type TCPComponents, type TCPOptions, tcp } from '@libp2p/tcp'
import type { Multiaddr } from '@multiformats/multiaddr'

type SendData = Parameters<MultiaddrConnection['send']>[0]

/**
 * libp2p's TCP transport, with every write to the socket made in one piece.
 *
 * What goes to a TCP connection is already framed twice: Noise hands the connection each encrypted message as a
 * list of buffers (the 2-byte length, then the ciphertext), and `@libp2p/tcp` (11.x) writes each buffer of a list
 * with its own `socket.write`, which on an idle socket is its own `write` system call. A gossip message or a
 * block-exchange answer forwarded to a peer is two or three system calls where one would do. On a host that runs
 * many nodes, these writes were the largest single item of a relaying node's CPU profile (15% of its busy time
 * while transfers flowed through a 10-node devnet), and every node pays them per hop.
 *
 * So the connection's `send` joins a list of several buffers into one before queueing it, when the list is no
 * longer than one Noise message (its 2-byte length and at most 65,535 bytes): the copy is then cheap next to the
 * system calls it saves. A longer list (a large yamux frame, or a backlog Noise encrypts in one go after a
 * drain: many Noise messages) goes as it is, as does a single buffer: its writes are few for its size, and
 * joining it would copy and allocate it whole. The transport is otherwise `tcp()`: the same dialing, listening,
 * options and errors.
 */
export function coalescingTcp(init?: TCPOptions): (components: TCPComponents) => Transport {
  const make = tcp(init)
  return (components) => {
    const inner = make(components)
    const dial = (ma: Multiaddr, options: DialTransportOptions) =>
      inner.dial(ma, { ...options, upgrader: coalescingUpgrader(options.upgrader) })
    const createListener = (options: CreateListenerOptions): Listener =>
      inner.createListener({ ...options, upgrader: coalescingUpgrader(options.upgrader) })
    // A proxy, so that libp2p still finds the transport's symbols (its tag, its capabilities) on it.
    return new Proxy(inner, {
      get(target, prop) {
        if (prop === 'dial') return dial
        if (prop === 'createListener') return createListener
        const value = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
  }
}

function coalescingUpgrader(upgrader: Upgrader): Upgrader {
  return new Proxy(upgrader, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target)
      if (prop === 'upgradeOutbound' || prop === 'upgradeInbound')
        return (maConn: MultiaddrConnection, opts: unknown) =>
          (value as (c: MultiaddrConnection, o: unknown) => Promise<unknown>).call(
            target,
            coalesceWrites(maConn),
            opts,
          )
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** The longest list joined: one Noise message, its 2-byte length and up to 65,535 bytes of ciphertext. */
export const MAX_JOINED_BYTES = 2 + 65_535

/** Make `maConn.send` join a list of buffers into one, up to `MAX_JOINED_BYTES` (exported for its test). */
export function coalesceWrites(maConn: MultiaddrConnection): MultiaddrConnection {
  const send = maConn.send.bind(maConn)
  // A list's `subarray()` is its one buffer as it is, or a copy joining its buffers.
  maConn.send = (data: SendData) =>
    send(data instanceof Uint8Array || data.byteLength > MAX_JOINED_BYTES ? data : data.subarray())
  return maConn
}
