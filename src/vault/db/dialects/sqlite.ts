import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { SqliteDialect, type Dialect } from 'kysely';
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
    return { dialect: new SqliteDialect({ database: sqlite }) };
  },
};
