import type { SelectQueryBuilder } from 'kysely';
import { RefugeError } from '../../core/errors.js';

/** A page of a list ordered by name: at most `limit` items after the name `after`. */
export interface Page {
  limit?: number;
  after?: string;
}

/** Applies a page to a query over a table with a `name` column. */
export function paged<DB, TB extends keyof DB, O>(q: SelectQueryBuilder<DB, TB, O>, page: Page | undefined, column = 'name'): SelectQueryBuilder<DB, TB, O> {
  // Kysely cannot type a column chosen at run time; the column is one of ours, never the caller's.
  const any = q as unknown as SelectQueryBuilder<Record<string, Record<string, string>>, string, O>;
  let r = any;
  if (page?.after !== undefined) r = r.where(column, '>', page.after);
  r = r.orderBy(column);
  if (page?.limit !== undefined) r = r.limit(page.limit);
  return r as unknown as SelectQueryBuilder<DB, TB, O>;
}

export const isUniqueViolation = (err: unknown): boolean => /UNIQUE constraint failed|duplicate key value/.test(String((err as Error)?.message));

/** Runs an insert; a unique violation becomes `already_exists` naming the kind and the name. */
export async function insertUnique<T>(kind: string, name: string, insert: () => Promise<T>): Promise<T> {
  try {
    return await insert();
  } catch (err) {
    if (isUniqueViolation(err)) throw new RefugeError('already_exists', `${kind} '${name}' already exists`);
    throw err;
  }
}

/** A delete refused because other objects still use the one named. */
export function inUse(kind: string, name: string, by: string): RefugeError {
  return new RefugeError('failed_precondition', `${kind} '${name}' is still used by ${by}`, { hint: `remove or change ${by} first` });
}
