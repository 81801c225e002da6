import { type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { securityAndJobs } from './migrations-0002.js';
import { modelAndMonitoring } from './migrations-0003.js';
import { agentIdentities } from './migrations-0004.js';
import { groupCuts } from './migrations-0005.js';
import { drills } from './migrations-0006.js';
import { policyChunkSize } from './migrations-0007.js';
import { pointDiskChurn } from './migrations-0008.js';

/**
 * Schema migrations, in order. Never edit a released migration; add a new one. Column types are the portable
 * subset SQLite and PostgreSQL share (text, integer, bigint, double precision).
 */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>): Promise<void> {
      await db.schema
        .createTable('vaults')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('location_site_id', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('sites')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('provider', 'text', (c) => c.notNull())
        .addColumn('config_json', 'text', (c) => c.notNull())
        .addColumn('capacity_json', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('sites_vault_name', ['vault_id', 'name'])
        .execute();
      await db.schema
        .createTable('machines')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('site_id', 'text', (c) => c.notNull().references('sites.id'))
        .addColumn('hostname', 'text', (c) => c.notNull())
        .addColumn('os', 'text', (c) => c.notNull())
        .addColumn('cpus', 'integer', (c) => c.notNull())
        .addColumn('memory_mib', 'integer', (c) => c.notNull())
        .addColumn('disks_json', 'text', (c) => c.notNull())
        .addColumn('boot_json', 'text', (c) => c.notNull())
        .addColumn('agent_version', 'text', (c) => c.notNull())
        .addColumn('last_heartbeat_at', 'text')
        .addColumn('last_agent_error', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('machines_vault_name', ['vault_id', 'name'])
        .execute();
      await db.schema
        .createTable('policies')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('crash_interval_seconds', 'double precision', (c) => c.notNull())
        .addColumn('retention_hours', 'double precision', (c) => c.notNull())
        .addColumn('rpo_threshold_seconds', 'double precision', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('policies_vault_name', ['vault_id', 'name'])
        .execute();
      await db.schema
        .createTable('replications')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('machine_id', 'text', (c) => c.notNull().references('machines.id'))
        .addColumn('policy_id', 'text', (c) => c.notNull().references('policies.id'))
        .addColumn('source_site_id', 'text', (c) => c.notNull().references('sites.id'))
        .addColumn('target_site_id', 'text', (c) => c.notNull().references('sites.id'))
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('test_failover_state', 'text', (c) => c.notNull())
        .addColumn('active_job_id', 'text')
        .addColumn('progress_json', 'text')
        .addColumn('failover_json', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('replications_vault_name', ['vault_id', 'name'])
        .execute();
      await db.schema
        .createTable('recovery_points')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('replication_id', 'text', (c) => c.notNull().references('replications.id'))
        .addColumn('parent_id', 'text')
        .addColumn('captured_at', 'text', (c) => c.notNull())
        .addColumn('committed_at', 'text', (c) => c.notNull())
        .addColumn('consistency', 'text', (c) => c.notNull())
        .addColumn('changed_bytes', 'bigint', (c) => c.notNull())
        .addColumn('stored_bytes', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('recovery_points_by_replication')
        .on('recovery_points')
        .columns(['replication_id', 'captured_at'])
        .execute();
      await db.schema
        .createTable('jobs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('replication_id', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('params_json', 'text', (c) => c.notNull())
        .addColumn('result_json', 'text', (c) => c.notNull())
        .addColumn('error_json', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('ended_at', 'text')
        .execute();
      await db.schema.createIndex('jobs_by_state').on('jobs').columns(['state', 'created_at']).execute();
      await db.schema
        .createTable('job_tasks')
        .addColumn('job_id', 'text', (c) => c.notNull().references('jobs.id'))
        .addColumn('seq', 'integer', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('progress', 'double precision', (c) => c.notNull())
        .addColumn('message', 'text')
        .addColumn('started_at', 'text')
        .addColumn('ended_at', 'text')
        .addPrimaryKeyConstraint('job_tasks_pk', ['job_id', 'seq'])
        .execute();
    },
  },
  '0002_security_and_jobs': securityAndJobs,
  '0003_model_and_monitoring': modelAndMonitoring,
  '0004_agent_identities': agentIdentities,
  '0005_group_cuts': groupCuts,
  '0006_drills': drills,
  '0007_policy_chunk_size': policyChunkSize,
  '0008_point_disk_churn': pointDiskChurn,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: () => Promise.resolve(migrations),
};
