import type { Kysely, Migration } from 'kysely';

/**
 * Agent registration and mutual TLS: one-time registration keys (stored as SHA-256, like tokens), the client
 * certificates the vault CA issued to agents and standalone replicators (so a certificate maps to its machine or
 * site and can be revoked), and the host facts agents send with their heartbeats.
 */
export const agentIdentities: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('registration_keys')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
      .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
      .addColumn('created_by', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('used_at', 'text')
      .addColumn('used_by', 'text')
      .execute();
    await db.schema
      .createTable('agent_certificates')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('site_id', 'text', (c) => c.notNull())
      .addColumn('machine_id', 'text')
      .addColumn('fingerprint256', 'text', (c) => c.notNull().unique())
      .addColumn('not_after', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.alterTable('machines').addColumn('host_facts_json', 'text').execute();
  },
};
