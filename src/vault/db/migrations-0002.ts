import type { Kysely, Migration } from 'kysely';

/**
 * Durable jobs shared by several vault processes (leases, cancel, waiting for input), and security (users,
 * tokens, the audit log). Portable column types only (see migrations.ts).
 */
export const securityAndJobs: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    // Jobs: a lease (owner + expiry) says which process runs a job; a process that dies loses it when it expires.
    await db.schema.alterTable('jobs').addColumn('lease_owner', 'text').execute();
    await db.schema.alterTable('jobs').addColumn('lease_expires_at', 'text').execute();
    await db.schema.alterTable('jobs').addColumn('cancel_requested', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema.alterTable('jobs').addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema.alterTable('jobs').addColumn('requested_by', 'text').execute();
    // A task waiting for input (manual approval) shows its prompt in `message`; the answer is kept here.
    await db.schema.alterTable('job_tasks').addColumn('input_json', 'text').execute();
    // How many times a task was started: 1 unless a crash or restart interrupted it.
    await db.schema.alterTable('job_tasks').addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema.createIndex('jobs_by_vault').on('jobs').columns(['vault_id', 'created_at']).execute();

    await db.schema
      .createTable('users')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('password_hash', 'text', (c) => c.notNull())
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.references('users.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      /** SHA-256 of the secret part; tokens are 256 random bits, so a fast hash is enough. */
      .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('vault_id', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text')
      .addColumn('last_used_at', 'text')
      .execute();
    await db.schema
      .createTable('audit_log')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('principal', 'text', (c) => c.notNull())
      .addColumn('role', 'text')
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('vault', 'text')
      .addColumn('target', 'text')
      .addColumn('status', 'integer', (c) => c.notNull())
      .addColumn('details_json', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('audit_by_time').on('audit_log').columns(['at']).execute();
  },
};
