import type { Kysely, Migration } from 'kysely';

/**
 * Each recovery point records its churn per disk (issue 4: the replicator "reports per-disk churn"): a JSON list
 * of `{ name, changedBytes }`, as the point's manifest has it. Null for points recorded before, or by a replicator
 * that does not send it: their churn is known for the point as a whole only.
 */
export const pointDiskChurn: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('recovery_points').addColumn('disk_churn', 'text').execute();
  },
};
