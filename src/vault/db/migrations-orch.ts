import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Failover orchestration: recovery points may carry the id of the consistency-group cut they were taken in (the
 * "latest multi-machine" point choice picks the latest point that has one). The consistency-group work may add the
 * same column in its own migration: whichever runs second finds it and leaves it alone.
 */
export const orchGroupCut: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    const postgres = await sql<{ v: string }>`select version() as v`
      .execute(db)
      .then((r) => /postgres/i.test(r.rows[0]?.v ?? ''))
      .catch(() => false);
    if (postgres) {
      // Native and scoped to the vault's own schema (no catalog scan across the schemas other vaults may drop).
      await sql`alter table recovery_points add column if not exists group_cut_id text`.execute(db);
      return;
    }
    const columns = await sql<{ name: string }>`select name from pragma_table_info('recovery_points')`.execute(db);
    if (columns.rows.some((c) => c.name === 'group_cut_id')) return;
    await db.schema.alterTable('recovery_points').addColumn('group_cut_id', 'text').execute();
  },
};
