import { CamelCasePlugin, Kysely, Migrator } from 'kysely';
import { RefugeError } from '../../core/errors.js';
import type { Database } from './schema.js';
import { migrationProvider } from './migrations.js';
import type { DatabaseKind, VaultDialect } from './dialects/dialect.js';
import { sqliteDialect } from './dialects/sqlite.js';
import { postgresDialect } from './dialects/postgres.js';

export type VaultDb = Kysely<Database>;
export type { DatabaseKind };

/** Every dialect the vault speaks, tried in order against the URL. */
export const DIALECTS: readonly VaultDialect[] = [postgresDialect, sqliteDialect];

const dialects = new WeakMap<VaultDb, VaultDialect>();

/** The dialect a database was opened with (for the few queries that differ, such as row locking). */
export function dialectOf(db: VaultDb): VaultDialect {
  const d = dialects.get(db);
  if (!d) throw new RefugeError('internal', 'database was not opened with openDatabase');
  return d;
}

/**
 * Opens the vault database named by `url` and brings its schema up to date: `sqlite:PATH` (or a bare path) is the
 * embedded default; `postgres://user@host:5432/db[?schema=name]` selects PostgreSQL. Migrations take a lock, so
 * several processes may start at once.
 */
export async function openDatabase(url: string): Promise<VaultDb> {
  const dialect = DIALECTS.find((d) => d.matches(url));
  if (!dialect) {
    throw new RefugeError('invalid_argument', `database URL '${url.split('@').pop()}' is not supported`, {
      hint: 'use sqlite:/path/to/vault.db or postgres://user@host:5432/database',
    });
  }
  let db: VaultDb;
  let schema: string | undefined;
  try {
    const connected = await dialect.connect(url);
    schema = connected.schema;
    db = new Kysely<Database>({ dialect: connected.dialect, plugins: [new CamelCasePlugin()] });
  } catch (err) {
    throw RefugeError.wrap(err, `cannot open the vault database ${dialect.redact(url)}`, 'unavailable');
  }
  const migrator = new Migrator({ db, provider: migrationProvider, ...(schema ? { migrationTableSchema: schema } : {}) });
  let { error } = await migrator.migrateToLatest();
  // PostgreSQL: the migrator's catalog scan can trip over another schema dropped at that moment (3F000, raised by a
  // parallel worker; seen when many databases share a server, as tests do). Nothing was applied: try again.
  for (let retry = 0; retry < 3 && (error as { code?: string } | undefined)?.code === '3F000' && !String((error as Error).message).includes(`"${schema}"`); retry++) {
    ({ error } = await migrator.migrateToLatest());
  }
  if (error) {
    await db.destroy();
    throw RefugeError.wrap(error, `migrating the vault database ${dialect.redact(url)} failed`, 'unavailable');
  }
  dialects.set(db, dialect);
  return db;
}
