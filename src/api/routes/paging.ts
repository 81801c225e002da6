import { Type } from 'typebox';
import { Name } from './params.js';

/** `?limit=` on every list: 1..1000 (a string in the query, validated as digits). */
export const Limit = Type.String({ pattern: '^(1000|[1-9][0-9]{0,2})$', description: 'page size, 1-1000' });

/** The query of a list ordered by name: `?limit=&cursor=` (the cursor is the last name of the previous page). */
export const ListQuery = Type.Object({ limit: Type.Optional(Limit), cursor: Type.Optional(Name) }, { additionalProperties: false });

/**
 * A page of a list: its items and, when the page is full, the cursor for the next one (`?cursor=`). Lists are
 * ordered by a unique key (name or id), and the cursor is the last item's key, so pages never skip or repeat.
 */
export function page<T>(items: T[], limit: number, key: (item: T) => string): { items: T[]; nextCursor: string | null } {
  const last = items.at(-1);
  return { items, nextCursor: items.length === limit && last !== undefined ? key(last) : null };
}

/** Reads `limit` (default 100) and `cursor` from a list query. */
export function listPage(q: { limit?: string; cursor?: string }, defaultLimit = 100): { limit: number; after: string | undefined } {
  return { limit: q.limit ? Number(q.limit) : defaultLimit, after: q.cursor };
}
/** A page of named items. */
listPage.wrap = <T extends { name: string }>(items: T[], limit: number) => page(items, limit, (i) => i.name);
