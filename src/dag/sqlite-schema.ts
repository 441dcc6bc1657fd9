/** Versioned schema of the SQLite backend. Append only: never edit an applied migration or reuse a name. */
export const SQLITE_MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'blocks, chains, links, pins, evidence',
    sql: `
      CREATE TABLE blocks (
        id INTEGER PRIMARY KEY,
        cid BLOB NOT NULL UNIQUE,
        codec INTEGER NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL,
        stored_at INTEGER NOT NULL,
        chain TEXT,
        seq INTEGER
      );
      CREATE TABLE chain_entries (
        chain TEXT NOT NULL,
        seq INTEGER NOT NULL,
        cid BLOB NOT NULL,
        PRIMARY KEY (chain, seq)
      ) WITHOUT ROWID;
      CREATE TABLE chains (
        chain TEXT PRIMARY KEY,
        author TEXT NOT NULL,
        head_seq INTEGER NOT NULL,
        head_cid BLOB NOT NULL
      ) WITHOUT ROWID;
      -- Body links only: a block's link to its chain predecessor is (chain, seq - 1) in chain_entries.
      CREATE TABLE links (
        parent BLOB NOT NULL,
        child BLOB NOT NULL,
        PRIMARY KEY (parent, child)
      ) WITHOUT ROWID;
      CREATE INDEX links_child ON links (child);
      CREATE TABLE pins (
        cid BLOB PRIMARY KEY,
        pinned_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE evidence (
        chain TEXT NOT NULL,
        seq INTEGER NOT NULL,
        first_cid BLOB NOT NULL,
        second_cid BLOB NOT NULL,
        detected_at INTEGER NOT NULL,
        PRIMARY KEY (chain, seq, second_cid)
      ) WITHOUT ROWID;
    `,
  },
]
