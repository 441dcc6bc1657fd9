/**
 * Versioned schema of the PostgreSQL backend: the same tables and meaning as the SQLite schema. Append only:
 * never edit an applied migration or reuse a retired table or column name.
 */
export const POSTGRES_MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'blocks, chains, links, pins, evidence',
    sql: `
      CREATE TABLE blocks (
        id BIGSERIAL PRIMARY KEY,
        cid BYTEA NOT NULL UNIQUE,
        codec INTEGER NOT NULL,
        size INTEGER NOT NULL,
        data BYTEA NOT NULL,
        stored_at BIGINT NOT NULL
      );
      ALTER TABLE blocks ALTER COLUMN data SET STORAGE EXTERNAL;
      CREATE TABLE chain_entries (
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        cid BYTEA NOT NULL,
        PRIMARY KEY (chain, seq)
      );
      CREATE TABLE chains (
        chain TEXT PRIMARY KEY,
        author TEXT NOT NULL,
        head_seq BIGINT NOT NULL,
        head_cid BYTEA NOT NULL
      );
      CREATE TABLE links (
        parent BYTEA NOT NULL,
        child BYTEA NOT NULL,
        PRIMARY KEY (parent, child)
      );
      CREATE INDEX links_child ON links (child);
      CREATE TABLE pins (
        cid BYTEA PRIMARY KEY,
        pinned_at BIGINT NOT NULL
      );
      CREATE TABLE evidence (
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        first_cid BYTEA NOT NULL,
        second_cid BYTEA NOT NULL,
        detected_at BIGINT NOT NULL,
        PRIMARY KEY (chain, seq, second_cid)
      );
    `,
  },
]
