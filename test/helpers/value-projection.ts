/**
 * A test-fixture projection (both SQL dialects): folds `icn.value/v1` blocks whose inline value is `{ n, … }`
 * into per-chain counts and sums, one row per folded block, and a federation-wide total. Hooks let a test make
 * a fold throw, block, or defer.
 */
import { Type } from 'typebox'
import {
  type Block,
  type CID,
  createSignedBlock,
  encodeValue,
  type SignedBlock,
  VALUE_RECORD_TYPE,
} from '../../src/dag/index.js'
import type { Signer } from '../../src/identity/index.js'
import type { FoldContext, FoldOutcome, Projection, StateModule } from '../../src/state/index.js'

export interface FixtureHooks {
  /** Called before each fold; throw to fault, await to block. */
  beforeFold?: (ctx: FoldContext) => void | Promise<void>
}

export const fixtureModule: StateModule = {
  name: 'fixture',
  migrations: [
    {
      version: 1,
      description: 'per-chain counts and sums, folded blocks',
      sqlite: `CREATE TABLE fixture_chains (chain TEXT PRIMARY KEY, blocks INTEGER NOT NULL, total INTEGER NOT NULL);
        CREATE TABLE fixture_blocks (chain TEXT NOT NULL, seq INTEGER NOT NULL, cid TEXT NOT NULL, n INTEGER NOT NULL,
          PRIMARY KEY (chain, seq))`,
      postgres: `CREATE TABLE fixture_chains (chain TEXT PRIMARY KEY, blocks BIGINT NOT NULL, total BIGINT NOT NULL);
        CREATE TABLE fixture_blocks (chain TEXT NOT NULL, seq BIGINT NOT NULL, cid TEXT NOT NULL, n BIGINT NOT NULL,
          PRIMARY KEY (chain, seq))`,
    },
    {
      version: 2,
      description: 'a federation-wide total (a row every chain adds to: must commute)',
      sqlite: `CREATE TABLE fixture_totals (k TEXT PRIMARY KEY, blocks INTEGER NOT NULL, total INTEGER NOT NULL)`,
      postgres: `CREATE TABLE fixture_totals (k TEXT PRIMARY KEY, blocks BIGINT NOT NULL, total BIGINT NOT NULL)`,
    },
  ],
  tables: [
    { name: 'fixture_chains', orderBy: ['chain'] },
    { name: 'fixture_blocks', orderBy: ['chain', 'seq'] },
    { name: 'fixture_totals', orderBy: ['k'] },
  ],
}

const ValueBody = Type.Object({
  inline: Type.Object({ n: Type.Integer({ minimum: 0 }), notBefore: Type.Optional(Type.Integer()) }),
})

/** The fixture projection; `version` defaults to 1. */
export function valueProjection(hooks: FixtureHooks = {}, version = 1, name = 'fixture.values'): Projection {
  return {
    name,
    version,
    module: fixtureModule,
    chains: (chain) => chain.endsWith('/values'),
    recordTypes: { [VALUE_RECORD_TYPE]: ValueBody },
    async init(tx) {
      await tx.query(
        'INSERT INTO fixture_totals (k, blocks, total) VALUES ($1, 0, 0) ON CONFLICT (k) DO NOTHING',
        ['all'],
      )
    },
    async fold(ctx): Promise<FoldOutcome> {
      await hooks.beforeFold?.(ctx)
      const v = (ctx.block.body as { inline: { n: number; notBefore?: number } }).inline
      if (v.notBefore !== undefined && ctx.now < v.notBefore)
        return { status: 'deferred', untilMs: v.notBefore, reason: 'not yet' }
      if (v.n === 13) return { status: 'rejected', code: 'UNLUCKY', reason: 'thirteen' }
      const { chain, seq } = ctx.block
      await ctx.tx.query('INSERT INTO fixture_blocks (chain, seq, cid, n) VALUES ($1, $2, $3, $4)', [
        chain,
        seq,
        ctx.cid.toString(),
        v.n,
      ])
      await ctx.tx.query(
        `INSERT INTO fixture_chains (chain, blocks, total) VALUES ($1, 1, $2)
         ON CONFLICT (chain) DO UPDATE SET blocks = fixture_chains.blocks + 1, total = fixture_chains.total + $2`,
        [chain, v.n],
      )
      await ctx.tx.query('UPDATE fixture_totals SET blocks = blocks + 1, total = total + $1 WHERE k = $2', [
        v.n,
        'all',
      ])
      return { status: 'applied' }
    },
  }
}

/** A value block at `seq` of `chain` with inline value `value`. */
export function fixtureBlock(
  signer: Signer,
  chain: string,
  seq: number,
  prev: CID | null,
  value: unknown,
): Block & { block: SignedBlock } {
  return createSignedBlock(signer, {
    type: VALUE_RECORD_TYPE,
    chain,
    seq,
    prev,
    ts: 1_700_000_000_000 + seq,
    body: encodeValue(value).body,
  })
}

/** `values.length` linked blocks of `chain`, one per value. */
export function fixtureChain(
  signer: Signer,
  chain: string,
  values: unknown[],
): (Block & { block: SignedBlock })[] {
  const out: (Block & { block: SignedBlock })[] = []
  let prev: CID | null = null
  for (const [seq, value] of values.entries()) {
    const b = fixtureBlock(signer, chain, seq, prev, value)
    out.push(b)
    prev = b.cid
  }
  return out
}
