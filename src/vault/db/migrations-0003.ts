import type { Kysely, Migration } from 'kysely';

/**
 * The rest of the model: site networks and limits, machine NICs and agent reports, consistency groups, network
 * mappings, recovery plans, events, alerts with their channels and deliveries, and readiness reports.
 */
export const modelAndMonitoring: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('sites').addColumn('networks_json', 'text', (c) => c.notNull().defaultTo('[]')).execute();
    await db.schema.alterTable('sites').addColumn('limits_json', 'text', (c) => c.notNull().defaultTo('{}')).execute();
    await db.schema.alterTable('machines').addColumn('nics_json', 'text', (c) => c.notNull().defaultTo('[]')).execute();
    await db.schema.alterTable('machines').addColumn('agent_report_json', 'text').execute();
    await db.schema.alterTable('replications').addColumn('group_id', 'text').execute();
    await db.schema.alterTable('policies').addColumn('app_interval_seconds', 'double precision').execute();
    await db.schema.alterTable('policies').addColumn('bandwidth_mibps', 'double precision').execute();

    const named = (table: string) =>
      db.schema
        .createTable(table)
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint(`${table}_vault_name`, ['vault_id', 'name']);
    await named('consistency_groups').execute();
    await named('network_mappings')
      .addColumn('source_site_id', 'text', (c) => c.notNull().references('sites.id'))
      .addColumn('source_network', 'text', (c) => c.notNull())
      .addColumn('target_site_id', 'text', (c) => c.notNull().references('sites.id'))
      .addColumn('target_network', 'text', (c) => c.notNull())
      .addColumn('test_network', 'text')
      .execute();
    await named('recovery_plans')
      .addColumn('description', 'text', (c) => c.notNull())
      .addColumn('groups_json', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await named('alert_channels')
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('config_json', 'text', (c) => c.notNull())
      .addColumn('min_severity', 'text', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('events')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('vault_id', 'text', (c) => c.notNull())
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('severity', 'text', (c) => c.notNull())
      .addColumn('subject', 'text')
      .addColumn('message', 'text', (c) => c.notNull())
      .addColumn('details_json', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('events_by_vault').on('events').columns(['vault_id', 'id']).execute();

    await db.schema
      .createTable('alerts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('vault_id', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('severity', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('message', 'text', (c) => c.notNull())
      /** `kind:subject` while active, null once resolved: at most one active alert per kind and subject. */
      .addColumn('active_key', 'text')
      .addColumn('first_at', 'text', (c) => c.notNull())
      .addColumn('last_at', 'text', (c) => c.notNull())
      .addColumn('resolved_at', 'text')
      .addColumn('details_json', 'text', (c) => c.notNull())
      .addUniqueConstraint('alerts_active', ['vault_id', 'active_key'])
      .execute();
    await db.schema
      .createTable('notifications')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('alert_id', 'text', (c) => c.notNull())
      .addColumn('channel_id', 'text', (c) => c.notNull())
      .addColumn('transition', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('next_attempt_at', 'text', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('sent_at', 'text')
      .execute();
    await db.schema.createIndex('notifications_due').on('notifications').columns(['state', 'next_attempt_at']).execute();

    await db.schema
      .createTable('readiness_reports')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('vault_id', 'text', (c) => c.notNull())
      /** 'replication' | 'machine' | 'plan' | 'site' | 'vault', and the name within it. */
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('trigger', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('worst', 'text', (c) => c.notNull())
      .addColumn('results_json', 'text', (c) => c.notNull())
      .addColumn('override_json', 'text')
      .execute();
    await db.schema.createIndex('readiness_by_subject').on('readiness_reports').columns(['vault_id', 'scope', 'subject', 'id']).execute();
  },
};
