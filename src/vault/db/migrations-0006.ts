import type { Kysely, Migration } from 'kysely';

/**
 * Drills (issue 6): scheduled test failovers of a replication or a recovery plan with a health probe, and the
 * record of each run (outcome, measured RTO). The schedule is durable: `next_run_at` is claimed by
 * compare-and-set, so a restarted vault (or one of several sharing the database) runs each due drill once.
 */
export const drills: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('drills')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('vault_id', 'text', (c) => c.notNull().references('vaults.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      /** 'replication' | 'plan', and that object's name. */
      .addColumn('subject_kind', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      /** Seconds between scheduled runs; null: only run on request. */
      .addColumn('interval_seconds', 'double precision')
      .addColumn('next_run_at', 'text')
      .addColumn('enabled', 'integer', (c) => c.notNull())
      .addColumn('probe_json', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addUniqueConstraint('drills_vault_name', ['vault_id', 'name'])
      .execute();
    await db.schema.createIndex('drills_due').on('drills').columns(['enabled', 'next_run_at']).execute();
    await db.schema
      .createTable('drill_runs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('drill_id', 'text', (c) => c.notNull())
      .addColumn('vault_id', 'text', (c) => c.notNull())
      .addColumn('subject_kind', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('job_id', 'text', (c) => c.notNull())
      /** 'schedule' | 'request'. */
      .addColumn('trigger', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('ended_at', 'text')
      /** 'running' | 'succeeded' | 'failed'. */
      .addColumn('outcome', 'text', (c) => c.notNull())
      .addColumn('rto_seconds', 'double precision')
      .addColumn('cleaned_up', 'integer', (c) => c.notNull())
      .addColumn('details_json', 'text', (c) => c.notNull())
      .addColumn('error', 'text')
      .execute();
    await db.schema.createIndex('drill_runs_by_drill').on('drill_runs').columns(['drill_id', 'started_at']).execute();
    await db.schema.createIndex('drill_runs_by_subject').on('drill_runs').columns(['vault_id', 'subject_kind', 'subject', 'outcome', 'started_at']).execute();
  },
};
