/**
 * Limits of the agent -> replicator protocol, apart from the schemas (schemas.ts) that enforce them: the agent
 * needs the numbers, not TypeBox (~20 MiB of memory once loaded, P11 in docs/benchmarks.md).
 */

/** At most this many hashes per missing-chunks query. */
export const MAX_HASHES_PER_QUERY = 4096;

/** At most this many chunks per block-hash query (each answer is about 8.5 KB for a 1 MiB chunk). */
export const MAX_BLOCK_HASH_CHUNKS = 64;
