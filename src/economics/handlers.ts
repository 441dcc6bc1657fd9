import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from '../observability/index.js'
import { NoLedgerError, UnknownAccountError } from './errors.js'
import { type Ledger, parseInstant } from './ledger.js'

/** The ledger's route handlers (routes in ./routes.ts), over the node's ledger (absent without a federation). */
export function economicsHandlers(c: { ledger(): Ledger | undefined }) {
  const ledger = (): Ledger => {
    const l = c.ledger()
    if (!l) throw new NoLedgerError('this node runs without a federation (no --genesis), so it has no ledger')
    return l
  }
  const at = (req: FastifyRequest): number | undefined => {
    const text = (req.query as { at?: string }).at
    return text === undefined ? undefined : parseInstant(text)
  }
  return {
    listMembers: async () => ({ members: ledger().members() }),
    getMember: async (req: FastifyRequest) => {
      const { did } = req.params as { did: string }
      const l = ledger()
      const member = l.member(did)
      const account = member ? await l.account(did, at(req)) : undefined
      if (!member || !account) throw new UnknownAccountError(`${did} is not a member of this federation`)
      return { ...member, account }
    },
    listAccounts: async (req: FastifyRequest) => {
      const when = at(req)
      const accounts = await ledger().accounts(when)
      return {
        at: new Date(when ?? Date.parse(accounts[0]?.at ?? new Date().toISOString())).toISOString(),
        accounts,
      }
    },
    getAccount: async (req: FastifyRequest) => {
      const { did } = req.params as { did: string }
      const account = await ledger().account(did, at(req))
      if (!account) throw new UnknownAccountError(`${did} is no account of this federation`)
      return account
    },
    postTransfer: async (req: FastifyRequest, reply: FastifyReply) => {
      const log = req.log as unknown as Logger
      const receipt = await ledger().transferJson(req.body, log)
      log.info(
        {
          member: (req.body as { member?: string }).member,
          nonce: (req.body as { nonce?: string }).nonce,
          cid: receipt.cid,
        },
        'transfer accepted',
      )
      reply.code(201)
      return receipt
    },
  }
}
