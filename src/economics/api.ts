/**
 * The handlers of the ledger's routes (`routes.ts`), over the node's ledger (absent when the node runs without a
 * federation). The node builds them with `economicsHandlers` and hands them to the API server.
 */
import type { ModuleHandlers } from '../api/module.js'
import type { Logger } from '../observability/index.js'
import { NoLedgerError, UnknownAccountError } from './errors.js'
import { type Ledger, parseInstant } from './ledger.js'
import { economicsRoutes } from './routes.js'

export interface EconomicsApiComponents {
  /** The node's ledger, once it joined a federation. */
  ledger(): Ledger | undefined
}

export function economicsHandlers(c: EconomicsApiComponents): ModuleHandlers<typeof economicsRoutes> {
  const ledger = (): Ledger => {
    const l = c.ledger()
    if (!l) throw new NoLedgerError('this node runs without a federation (no --genesis), so it has no ledger')
    return l
  }
  const instant = (text: string | undefined): number | undefined =>
    text === undefined ? undefined : parseInstant(text)
  return {
    module: 'economics',
    routes: economicsRoutes,
    handlers: {
      listMembers: async () => ({ members: ledger().members() }),
      getMember: async (req) => {
        const l = ledger()
        const member = l.member(req.params.did)
        const account = member ? await l.account(req.params.did, instant(req.query.at)) : undefined
        if (!member || !account)
          throw new UnknownAccountError(`${req.params.did} is not a member of this federation`)
        return { ...member, account }
      },
      listAccounts: async (req) => {
        const l = ledger()
        // Without ?at=, the node's clock (as GET /v1/accounts/:did), not the machine's.
        const at = instant(req.query.at) ?? l.now()
        return { at: new Date(at).toISOString(), accounts: await l.accounts(at) }
      },
      getAccount: async (req) => {
        const account = await ledger().account(req.params.did, instant(req.query.at))
        if (!account) throw new UnknownAccountError(`${req.params.did} is no account of this federation`)
        return account
      },
      postTransfer: async (req, reply) => {
        const log = req.log as unknown as Logger
        const receipt = (await ledger().transferJson(req.body, log)) as { cid?: string }
        log.info({ member: req.body.member, nonce: req.body.nonce, cid: receipt.cid }, 'transfer accepted')
        reply.code(201)
        return receipt
      },
    },
  }
}
