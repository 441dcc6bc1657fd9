import { createServer, type Server } from 'node:net'
import { PortInUseError } from './errors.js'

const HOST = '127.0.0.1'

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen({ port, host: HOST, exclusive: true }, () => resolve(server))
  })
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

function portOf(server: Server): number {
  const addr = server.address()
  return typeof addr === 'object' && addr ? addr.port : 0
}

/**
 * `count` distinct free TCP ports on 127.0.0.1. All are held open until every one is chosen, so none repeats;
 * they are free again when this returns (another program could take one before the node binds it, a small race
 * that the node reports as its listen error).
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    for (let i = 0; i < count; i++) servers.push(await listen(0))
    return servers.map(portOf)
  } finally {
    await Promise.all(servers.map(close))
  }
}

/** Check that each of `ports` can be bound on 127.0.0.1; throws PortInUseError for the first that cannot. */
export async function checkPortsFree(ports: number[]): Promise<void> {
  for (const port of ports) {
    let server: Server
    try {
      server = await listen(port)
    } catch {
      throw new PortInUseError(port)
    }
    await close(server)
  }
}
