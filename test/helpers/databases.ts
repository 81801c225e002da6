import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DATABASE_KINDS, type DatabaseKind } from '../../src/vault/db/dialects/dialect.js';

/**
 * Real databases for tests, one fresh and isolated per call: a SQLite file in a new temporary folder, or a new
 * schema in the PostgreSQL database at REFUGE_TEST_POSTGRES_URL (default: the local server, database `test`,
 * which .ci/run starts). PostgreSQL being down fails the tests: nothing is skipped.
 */
export const TEST_DATABASES: readonly DatabaseKind[] = DATABASE_KINDS;

export const POSTGRES_URL = process.env.REFUGE_TEST_POSTGRES_URL ?? 'postgres://root@127.0.0.1:5432/test';

export interface TestDatabase {
  kind: DatabaseKind;
  url: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(kind: DatabaseKind): Promise<TestDatabase> {
  if (kind === 'sqlite') {
    const dir = await mkdtemp(join(tmpdir(), 'refuge-db-'));
    return { kind, url: `sqlite:${join(dir, 'vault.db')}`, drop: () => rm(dir, { recursive: true, force: true }) };
  }
  const schema = `t_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  const url = new URL(POSTGRES_URL);
  url.searchParams.set('schema', schema);
  return {
    kind,
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
