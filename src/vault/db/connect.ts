import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { CamelCasePlugin, Kysely, Migrator, SqliteDialect } from 'kysely';
import { RefugeError } from '../../core/errors.js';
import type { Database } from './schema.js';
import { migrationProvider } from './migrations.js';

export type VaultDb = Kysely<Database>;

/**
 * Opens the vault database named by `url` and brings its schema up to date. `sqlite:PATH` (or a bare path) is the
 * embedded default; PostgreSQL URLs are accepted once that dialect lands (issue 5).
 */
export async function openDatabase(url: string): Promise<VaultDb> {
  const path = url.startsWith('sqlite:') ? url.slice('sqlite:'.length) : url;
  if (/^[a-z]+:\/\//.test(path)) {
    throw new RefugeError('invalid_argument', `database URL '${url.split('@').pop()}' is not supported yet`, {
      hint: 'use sqlite:/path/to/vault.db',
    });
  }
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const sqlite = new SQLite(path);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }), plugins: [new CamelCasePlugin()] });
  const { error } = await new Migrator({ db, provider: migrationProvider }).migrateToLatest();
  if (error) {
    await db.destroy();
    throw RefugeError.wrap(error, `migrating the vault database at ${path} failed`);
  }
  return db;
}
