import { IcnError, type IcnErrorOptions } from '../identity/index.js'

/**
 * The ledger's typed errors. Each code is stable (the API maps it to an HTTP status in api/errors.ts, the CLI
 * to an exit status) and each is also the code a fold records when it refuses an operation it finds in a
 * block, so a refusal reads the same on every node.
 */
function ledgerError(code: string, name: string) {
  return class extends IcnError {
    static readonly code = code
    override readonly name = name
    constructor(message: string, options?: IcnErrorOptions) {
      super(code, message, options)
    }
  }
}

/** The account cannot pay: balance (regenerated mana plus received credit) below the amount. */
export class InsufficientManaError extends ledgerError('INSUFFICIENT_MANA', 'InsufficientManaError') {}
/** A member record whose nonce that member already used. */
export class RecordReplayedError extends ledgerError('RECORD_REPLAYED', 'RecordReplayedError') {}
/** A member record past its expiry, or one whose expiry lies further ahead than `recordMaxTtlMs`. */
export class RecordExpiredError extends ledgerError('RECORD_EXPIRED', 'RecordExpiredError') {}
/** The record's lifetime is longer than the federation allows. */
export class RecordTtlError extends ledgerError('RECORD_TTL_TOO_LONG', 'RecordTtlError') {}
/** The record's signature does not verify under the member's key and the record kind's domain tag. */
export class RecordSignatureError extends ledgerError('INVALID_RECORD_SIGNATURE', 'RecordSignatureError') {}
/** A record that does not have the shape of its kind (fields, types, lengths). */
export class MalformedRecordError extends ledgerError('MALFORMED_RECORD', 'MalformedRecordError') {}
/** The record names another federation. */
export class WrongFederationError extends ledgerError('WRONG_FEDERATION', 'WrongFederationError') {}
/** The signer is not a member of the federation. */
export class NotAMemberError extends ledgerError('NOT_A_MEMBER', 'NotAMemberError') {}
/** The payee is no account of the federation (member, node or treasury). */
export class UnknownAccountError extends ledgerError('UNKNOWN_ACCOUNT', 'UnknownAccountError') {}
/** An amount that is not a positive safe integer (or, for a settlement, not within the hold). */
export class InvalidAmountError extends ledgerError('INVALID_AMOUNT', 'InvalidAmountError') {}
/** A payer paying itself. */
export class SelfTransferError extends ledgerError('SELF_TRANSFER', 'SelfTransferError') {}
/** The member is homed at another node (a fold found it on the wrong chain, or a node cannot forward). */
export class WrongHomeError extends ledgerError('WRONG_HOME', 'WrongHomeError') {}
/** The member's home node could not be reached to forward the record to. */
export class HomeUnreachableError extends ledgerError('HOME_UNREACHABLE', 'HomeUnreachableError') {}
/** No open hold with that id on this node's ledger. */
export class HoldNotFoundError extends ledgerError('HOLD_NOT_FOUND', 'HoldNotFoundError') {}
/** A hold id that is already in use. */
export class HoldExistsError extends ledgerError('HOLD_EXISTS', 'HoldExistsError') {}
/** The node has no ledger: it was started without a federation genesis. */
export class NoLedgerError extends ledgerError('NO_LEDGER', 'NoLedgerError') {}
/** A `--at` / `?at=` that is not an ISO-8601 instant. */
export class InvalidInstantError extends ledgerError('INVALID_INSTANT', 'InvalidInstantError') {}
