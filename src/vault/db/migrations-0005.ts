import type { Kysely, Migration } from 'kysely';

/**
 * Consistency-group cuts (src/vault/group-cuts.ts): one row per coordinated cut of a group, one per member
 * replication, and on recovery points the cut they belong to. `group_cut_id` is set only once every member's point
 * of the cut is recorded, in one transaction, so a failed cut leaves ordinary points and no partial group point.
 */
export const groupCuts: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('recovery_points').addColumn('group_cut_id', 'text').execute();
    await db.schema.createIndex('recovery_points_by_group_cut').on('recovery_points').column('group_cut_id').execute();
    await db.schema
      .createTable('group_cuts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      // No foreign keys to vaults, groups or replications: any of them may be deleted; their cuts stay as history.
      .addColumn('vault_id', 'text', (c) => c.notNull())
      .addColumn('group_id', 'text', (c) => c.notNull())
      // open -> complete | failed
      .addColumn('state', 'text', (c) => c.notNull())
      // The group's id while the cut is open, null after: at most one open cut per group (unique), in any dialect.
      .addColumn('open_key', 'text', (c) => c.unique())
      .addColumn('trigger', 'text', (c) => c.notNull())
      .addColumn('opened_at', 'text', (c) => c.notNull())
      .addColumn('barrier_deadline', 'text', (c) => c.notNull())
      .addColumn('pause_seconds', 'double precision', (c) => c.notNull())
      .addColumn('commit_deadline', 'text', (c) => c.notNull())
      .addColumn('paused_at', 'text')
      .addColumn('resolved_at', 'text')
      .addColumn('reason', 'text')
      .execute();
    await db.schema.createIndex('group_cuts_by_group').on('group_cuts').columns(['group_id', 'opened_at']).execute();
    await db.schema
      .createTable('group_cut_members')
      .addColumn('cut_id', 'text', (c) => c.notNull().references('group_cuts.id'))
      .addColumn('replication_id', 'text', (c) => c.notNull())
      // pending -> prepared -> paused -> cut (point reported) | failed
      .addColumn('phase', 'text', (c) => c.notNull())
      .addColumn('point_id', 'text')
      .addColumn('error', 'text')
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('group_cut_members_pk', ['cut_id', 'replication_id'])
      .execute();
  },
};
