import type { Kysely, Migration } from 'kysely';

/**
 * A policy may choose the chunk size of its replications (issue 3: "configurable per policy"): small chunks for
 * disks with small random writes (less to read, rebuild and store per write), the store's default otherwise.
 * Null: the target store's chunk size. Fixed once the policy exists (a new chunk size shares no chunk with the old).
 */
export const policyChunkSize: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('policies').addColumn('chunk_size_kib', 'integer').execute();
  },
};
