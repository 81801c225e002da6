import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Failover orchestration: recovery points may carry the id of the consistency-group cut they were taken in (the
 * "latest multi-machine" point choice picks the latest point that has one). The consistency-group work may add the
 * same column in its own migration: whichever runs second finds it and leaves it alone.
 */
export const orchGroupCut: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    if (await hasColumn(db, 'recovery_points', 'group_cut_id')) return;
    await db.schema.alterTable('recovery_points').addColumn('group_cut_id', 'text').execute();
  },
};

/** Whether a column exists, looking only at this vault's own schema on PostgreSQL (tests share a database). */
async function hasColumn(db: Kysely<unknown>, table: string, column: string): Promise<boolean> {
  const postgres = await sql<{ s: string }>`select current_schema() as s`
    .execute(db)
    .then(() => true)
    .catch(() => false);
  if (postgres) {
    const r = await sql<{ n: number }>`select 1 as n from information_schema.columns where table_schema = current_schema() and table_name = ${table} and column_name = ${column}`.execute(db);
    return r.rows.length > 0;
  }
  const r = await sql<{ name: string }>`select name from pragma_table_info(${table})`.execute(db);
  return r.rows.some((c) => c.name === column);
}
