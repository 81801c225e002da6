import type { Dialect } from 'kysely';

export const DATABASE_KINDS = ['sqlite', 'postgres'] as const;
export type DatabaseKind = (typeof DATABASE_KINDS)[number];

/**
 * A database the vault can keep its state in. Each dialect lives in its own file with the same shape; the vault
 * picks one by the connection URL's scheme. Contract, checked by the shared repository suite
 * (test/unit/vault/repository-suite.ts) run against every dialect:
 * - `matches` is a pure test of the URL (no I/O);
 * - `connect` returns a Kysely dialect whose connections see the vault's tables (creating what must exist before
 *   migrations, such as a PostgreSQL schema, whose name it returns so migrations look only there); a compare-and-set `UPDATE ... WHERE` changes a row for exactly one
 *   of two concurrent callers;
 * - `rowLocking` says whether `SELECT ... FOR UPDATE SKIP LOCKED` exists; without it the dialect must serialize
 *   write transactions (SQLite's single writer), so claims by compare-and-set alone are still safe;
 * - `redact` returns the URL without credentials, for messages and logs;
 * - times are stored as ISO-8601 UTC text and JSON as text in every dialect, so queries are the same everywhere.
 */
export interface VaultDialect {
  readonly kind: DatabaseKind;
  readonly rowLocking: boolean;
  matches(url: string): boolean;
  connect(url: string): Promise<{ dialect: Dialect; schema?: string }>;
  redact(url: string): string;
}
