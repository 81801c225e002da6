/**
 * Limits of the agent -> replicator protocol, apart from the schemas (schemas.ts) that enforce them: the agent
 * needs the numbers, not TypeBox (~20 MiB of memory once loaded, P11 in docs/benchmarks.md).
 */

/** At most this many hashes per missing-chunks query. */
export const MAX_HASHES_PER_QUERY = 4096;

/** At most this many chunks per block-hash query (each answer is about 8.5 KB for a 1 MiB chunk). */
export const MAX_BLOCK_HASH_CHUNKS = 64;

/**
 * A commit listing more chunks than this sends them in parts first (`POST /points/staged`, store/staging.ts): a
 * JSON commit body holds at most 64 MiB, about 880,000 entries, and a long list is better sent in resumable parts.
 */
export const STAGE_ABOVE_ENTRIES = 200_000;

/** At most this many [index, hash] entries per staged part (about 7.6 MB of JSON). */
export const MAX_STAGE_PART_ENTRIES = 100_000;

/** At most this many chunks per page of a point's paged chunk listing (`?disk=&from=&limit=`, about 7 MB of JSON). */
export const MAX_LISTED_CHUNKS = 100_000;
