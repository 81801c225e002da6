import pg from 'pg';
import { PostgresDialect, type Dialect } from 'kysely';
import { RefugeError } from '../../../core/errors.js';
import type { VaultDialect } from './dialect.js';

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Splits Refuge's own `schema` parameter off a PostgreSQL URL: `postgres://user@host/db?schema=refuge` keeps the
 * vault's tables in that schema (created if missing), so several vaults, or isolated tests, share one database.
 */
export function parsePostgresUrl(url: string): { connectionString: string; schema: string | undefined } {
  const u = new URL(url);
  const schema = u.searchParams.get('schema') ?? undefined;
  u.searchParams.delete('schema');
  if (schema !== undefined && !SCHEMA_RE.test(schema)) {
    throw new RefugeError('invalid_argument', `database schema '${schema}' is not valid`, { hint: 'use lowercase letters, digits and underscores' });
  }
  return { connectionString: u.toString(), schema };
}

// bigint (counts, byte totals) as numbers: every value Refuge stores fits in 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/**
 * PostgreSQL through `pg` (`postgres://` or `postgresql://`): for vaults that outgrow one machine. Several vault
 * processes share one database; jobs are claimed with `FOR UPDATE SKIP LOCKED` and leases.
 */
export const postgresDialect: VaultDialect = {
  kind: 'postgres',
  rowLocking: true,
  matches: (url) => /^postgres(ql)?:\/\//i.test(url),
  redact(url) {
    try {
      const u = new URL(url);
      if (u.password) u.password = '***';
      return u.toString();
    } catch {
      return 'postgres://(unparsable URL)';
    }
  },
  async connect(url: string): Promise<{ dialect: Dialect; schema: string }> {
    const { connectionString, schema } = parsePostgresUrl(url);
    if (schema) {
      const client = new pg.Client({ connectionString });
      try {
        await client.connect();
        await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      } catch (err) {
        // Two processes creating the same schema at once: the loser sees a unique violation; the schema exists.
        if ((err as { code?: string }).code !== '23505') throw err;
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    const pool = new pg.Pool({ connectionString, max: 10, ...(schema ? { options: `-c search_path=${schema}` } : {}) });
    pool.on('error', () => undefined); // an idle client lost its connection; the pool replaces it
    return { dialect: new PostgresDialect({ pool }), schema: schema ?? 'public' };
  },
};
