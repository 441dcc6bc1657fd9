import { Type } from 'typebox'
// typebox and the route contract only: the CLI's client loads this file (a test checks the table's imports).
import { route } from '../api/module.js'

/** No control characters: records.ts PLAIN_TEXT, the block rule (this file imports only typebox and route). */
const PLAIN = '^[^\\x00-\\x1f\\x7f]+$'

/** A member-signed transfer record in JSON (docs/protocol.md "Member records"); `sig` as base64url. */
export const TransferRecordJson = Type.Object(
  {
    kind: Type.Literal('transfer'),
    federation: Type.String({
      minLength: 1,
      maxLength: 128,
      pattern: PLAIN,
      description: 'federation id (genesis CID)',
    }),
    member: Type.String({
      minLength: 1,
      maxLength: 128,
      pattern: PLAIN,
      description: "the paying member's did:key (the signer)",
    }),
    to: Type.String({ minLength: 1, maxLength: 128, pattern: PLAIN, description: "the payee's account id" }),
    amount: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'smallest units' }),
    nonce: Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$', description: 'never reused by this member' }),
    expires: Type.Integer({
      minimum: 0,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'ms since the epoch',
    }),
    sig: Type.String({ pattern: '^[A-Za-z0-9_-]{86}$', description: 'Ed25519 signature, base64url' }),
  },
  { additionalProperties: false },
)

const Amount = Type.Integer({ description: 'smallest units' })
export const AccountSchema = Type.Object(
  {
    did: Type.String({ description: "the account's id: a member's or node's DID, or `treasury`" }),
    kind: Type.Union([Type.Literal('member'), Type.Literal('node'), Type.Literal('treasury')]),
    home: Type.String({ description: 'DID of the node whose ledger chain writes this account' }),
    balance: Type.Integer({ description: 'what it can spend at `at`: mana + credit' }),
    mana: Type.Integer({ description: 'the regenerating part (manabar) at `at`' }),
    credit: Type.Integer({ description: 'the non-regenerating part: received credit and holds given back' }),
    held: Amount,
    allocated: Amount,
    regenerated: Amount,
    received: Amount,
    sent: Amount,
    burned: Amount,
    at: Type.String({ format: 'date-time', description: 'the instant the figures are for' }),
  },
  {},
)
const AtQuery = Type.Object({
  at: Type.Optional(
    Type.String({ description: 'ISO-8601 instant: the state as of then (default now)', maxLength: 64 }),
  ),
})
const Member = Type.Object({
  did: Type.String(),
  home: Type.String({ description: "DID of the member's home node" }),
})
const DidParam = Type.Object({ did: Type.String({ maxLength: 256, pattern: PLAIN }) })

export const economicsRoutes = {
  listMembers: route({
    id: 'listMembers',
    method: 'GET',
    url: '/v1/members',
    summary: "The federation's members and their home nodes",
    tags: ['ledger'],
    auth: false,
    response: Type.Object({ members: Type.Array(Member) }),
  }),
  getMember: route({
    id: 'getMember',
    method: 'GET',
    url: '/v1/members/:did',
    summary: 'One member: its home node and its account',
    tags: ['ledger'],
    auth: false,
    params: DidParam,
    querystring: AtQuery,
    response: Type.Object({ did: Type.String(), home: Type.String(), account: AccountSchema }),
  }),
  listAccounts: route({
    id: 'listAccounts',
    method: 'GET',
    url: '/v1/accounts',
    summary: 'Every account of the federation (members, nodes, treasury), as of `at`',
    tags: ['ledger'],
    auth: false,
    querystring: AtQuery,
    response: Type.Object({
      at: Type.String({ format: 'date-time' }),
      accounts: Type.Array(AccountSchema),
    }),
  }),
  getAccount: route({
    id: 'getAccount',
    method: 'GET',
    url: '/v1/accounts/:did',
    summary: 'One account, as of `at`',
    tags: ['ledger'],
    auth: false,
    params: DidParam,
    querystring: AtQuery,
    response: AccountSchema,
  }),
  postTransfer: route({
    id: 'postTransfer',
    method: 'POST',
    url: '/v1/ledger/transfers',
    summary:
      "A member-signed transfer. The member's signature is the authorisation (no API key). Sent to any node: one that is not the member's home forwards it there. Answers once the transfer is written and folded on the home node.",
    tags: ['ledger'],
    auth: false,
    body: TransferRecordJson,
    status: 201,
    response: Type.Object({
      cid: Type.String({ description: 'the ledger block that holds the transfer' }),
      chain: Type.String(),
      seq: Type.Integer(),
      index: Type.Integer({ description: "the transfer's index among the block's operations" }),
      ts: Type.String({ format: 'date-time', description: "the block's time" }),
      from: AccountSchema,
      to: AccountSchema,
    }),
  }),
}
