import { Type } from 'typebox';

/** `?limit=` on every list: 1..1000 (a string in the query, validated as digits). */
export const Limit = Type.String({ pattern: '^(1000|[1-9][0-9]{0,2})$', description: 'page size, 1-1000' });

/**
 * A page of a list: its items and, when the page is full, the cursor for the next one (`?cursor=`). Lists are
 * ordered by a unique key (name or id), and the cursor is the last item's key, so pages never skip or repeat.
 */
export function page<T>(items: T[], limit: number, key: (item: T) => string): { items: T[]; nextCursor: string | null } {
  const last = items.at(-1);
  return { items, nextCursor: items.length === limit && last !== undefined ? key(last) : null };
}
