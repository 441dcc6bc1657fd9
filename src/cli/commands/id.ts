import type { Command } from 'commander'
import {
  isDid,
  namespaceTag,
  publicKeyFromDid,
  verifyEd25519,
  verifyWithDomain,
} from '../../identity/index.js'
// The data folder and settings only, so `icn id …` starts without loading the node.
import { readDid, unlockIdentity } from '../../node/datadir.js'
import { defaultOptions } from '../../node/options.js'
import {
  CliError,
  EXIT,
  type GlobalOpts,
  messageFrom,
  output,
  parseHex,
  passphraseFor,
  toHex,
} from '../common.js'

/**
 * The libp2p peer id of the node with this DID: a pure function of the key. Only the peer-id helpers are loaded
 * (the key codecs), never libp2p itself.
 */
export async function peerIdOf(did: string): Promise<string> {
  const { peerIdFromDid } = await import('../../network/peer-id.js')
  return peerIdFromDid(did).toString()
}

export function registerId(program: Command): void {
  const id = program.command('id').description('The node identity: show it, sign and verify messages')

  id.command('show')
    .description(
      "Show the data folder's DID and the libp2p peer id it gives the node (no passphrase needed), " +
        'e.g. to write the /p2p/PEER_ID of a --bootstrap address',
    )
    .option('--data-dir <dir>', 'data folder', defaultOptions.dataDir)
    .option('--json', 'print JSON')
    .action(async (opts: GlobalOpts & { dataDir: string }) => {
      const did = await readDid(opts.dataDir)
      const peerId = await peerIdOf(did)
      output(opts, { did, peerId, dataDir: opts.dataDir }, `DID      ${did}\npeer id  ${peerId}`)
    })

  id.command('sign')
    .description(
      'Sign a message under a namespace (like ssh-keygen -Y sign -n): never valid as a block signature',
    )
    .requiredOption('--namespace <ns>', 'what the signature is for, e.g. "file" or "icn-login@example.coop"')
    .option('--message-hex <hex>', 'the message, in hex')
    .option('--file <file>', 'the message, read from a file')
    .option('--data-dir <dir>', 'data folder', defaultOptions.dataDir)
    .option('--passphrase-file <file>', 'keystore passphrase file (else ICN_PASSPHRASE or a prompt)')
    .option('--json', 'print JSON')
    .action(
      async (
        opts: GlobalOpts & { namespace: string; messageHex?: string; file?: string; dataDir: string },
      ) => {
        const message = await messageFrom(opts)
        let tag: string
        try {
          tag = namespaceTag(opts.namespace)
        } catch (err) {
          throw new CliError((err as Error).message, EXIT.usage)
        }
        const signer = await unlockIdentity(opts.dataDir, await passphraseFor(opts))
        const sig = signer.signWithDomain(tag, message)
        output(opts, { did: signer.did, namespace: opts.namespace, signatureHex: toHex(sig) }, toHex(sig))
      },
    )

  id.command('verify')
    .description(
      'Verify a signature: with --namespace as made by `icn id sign`, without it a plain Ed25519 signature over the bytes. Exit 0 valid, 1 invalid, 2 malformed input',
    )
    .requiredOption('--did <did>', 'did:key of the signer')
    .requiredOption('--signature-hex <hex>', 'the 64-byte signature, in hex')
    .option('--message-hex <hex>', 'the message, in hex')
    .option('--file <file>', 'the message, read from a file')
    .option('--namespace <ns>', 'the namespace it was signed under')
    .option('--json', 'print JSON')
    .action(
      async (
        opts: GlobalOpts & {
          did: string
          signatureHex: string
          messageHex?: string
          file?: string
          namespace?: string
        },
      ) => {
        if (!isDid(opts.did)) throw new CliError(`--did is not an Ed25519 did:key: ${opts.did}`, EXIT.usage)
        let publicKey: Uint8Array
        try {
          publicKey = publicKeyFromDid(opts.did)
        } catch (err) {
          throw new CliError((err as Error).message, EXIT.usage)
        }
        const sig = parseHex(opts.signatureHex, '--signature-hex')
        if (sig.length !== 64)
          throw new CliError(`--signature-hex must be 64 bytes, got ${sig.length}`, EXIT.usage)
        const message = await messageFrom(opts)
        let valid: boolean
        if (opts.namespace !== undefined) {
          let tag: string
          try {
            tag = namespaceTag(opts.namespace)
          } catch (err) {
            throw new CliError((err as Error).message, EXIT.usage)
          }
          valid = verifyWithDomain(publicKey, tag, message, sig)
        } else {
          valid = verifyEd25519(publicKey, message, sig)
        }
        output(
          opts,
          { valid, did: opts.did, namespace: opts.namespace ?? null },
          valid ? 'valid' : 'INVALID signature',
        )
        if (!valid) process.exitCode = EXIT.failed
      },
    )
}
