import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { SqliteDialect, type Dialect, type SqliteDatabase } from 'kysely';
import type { VaultDialect } from './dialect.js';

const pathOf = (url: string): string => (url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url);

/**
 * SQLite through better-sqlite3: the embedded default (`sqlite:/path/vault.db`, or a bare path). One writer at a
 * time (WAL, busy timeout), which is what makes compare-and-set claims safe without row locks.
 */
export const sqliteDialect: VaultDialect = {
  kind: 'sqlite',
  rowLocking: false,
  matches: (url) => url.startsWith('sqlite:') || !/^[a-z][a-z0-9+.-]*:\/\//i.test(url),
  redact: (url) => url,
  async connect(url: string): Promise<{ dialect: Dialect }> {
    const path = pathOf(url);
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const sqlite = new SQLite(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    return { dialect: new SqliteDialect({ database: preparedOnce(sqlite) }) };
  },
};

/** Statements kept prepared: far more than the vault's distinct queries, so only generated one-offs are evicted. */
const KEPT_STATEMENTS = 1000;

/**
 * `db` for Kysely, with each statement prepared once and kept. Kysely's driver prepares every query it runs, and
 * SQLite's prepare (parsing, planning) was the largest cost of the queries an agent's upload makes (a profile of
 * P3: 125 ms of the vault's main thread over five points, more than running them). Reusing a statement is safe
 * here: the driver runs one query at a time on its one connection (a stream holds the connection until it ends),
 * and SQLite re-prepares a kept statement by itself when a migration changes the schema. One limit: a query that
 * streams (Kysely's `.stream()`, which nothing here uses) keeps its statement busy until it ends, so running the same
 * SQL inside the loop would fail with "statement is busy"; such code would prepare its own statement.
 */
function preparedOnce(db: SQLite.Database): SqliteDatabase {
  const kept = new Map<string, SQLite.Statement>();
  return {
    close: () => db.close(),
    prepare(sql) {
      let stmt = kept.get(sql);
      if (stmt) {
        kept.delete(sql); // re-inserted below: the map's order is least recently used first
      } else {
        stmt = db.prepare(sql);
        if (kept.size >= KEPT_STATEMENTS) kept.delete(kept.keys().next().value as string);
      }
      kept.set(sql, stmt);
      return stmt;
    },
  };
}
