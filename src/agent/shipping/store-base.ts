import { differingRuns, blockDigests, BLOCK_SIZE, type Run } from '../../protocol/chunk-encoding.js';
import { isRefugeError } from '../../core/errors.js';
import type { ReplicatorTransport } from '../clients.js';

/**
 * Comparing with the store instead of with remembered hashes: after a resync request, a lost agent state, or the
 * seed point of a re-protect (the former primary's own disks, hashed where they lie), the agent fetches the parent
 * point's chunk hashes, so unchanged chunks are skipped without a query, and patches each changed chunk with only
 * the 4 KiB blocks whose digest differs from the stored chunk's (a two-level hash comparison, like rsync's).
 */
export async function storeBase(transport: ReplicatorTransport, pointId: string, chunkSize: number): Promise<Record<string, (string | null)[]>> {
  if (!transport.pointChunks) return {};
  let point;
  try {
    point = await transport.pointChunks(pointId);
  } catch (err) {
    // A replicator older than this call answers 404: compare by asking which chunks it lacks, as before.
    if (isRefugeError(err, 'not_found')) return {};
    throw err;
  }
  // A disk stored in chunks of another size cannot be compared chunk by chunk: it is listed whole (base unknown).
  return Object.fromEntries(point.disks.filter((d) => d.chunkSize === chunkSize).map((d) => [d.name, d.hashes]));
}

/** Finds the runs of a chunk that differ from its base chunk in the store, by block digests. */
export function blockRunsFinder(transport: ReplicatorTransport): (baseHash: string | null, data: Buffer) => Promise<Run[] | undefined> {
  let zeroDigests: string[] | undefined;
  return async (baseHash, data) => {
    if (baseHash === null) {
      zeroDigests ??= blockDigests(Buffer.alloc(data.length), BLOCK_SIZE);
      return differingRuns(data, zeroDigests, BLOCK_SIZE);
    }
    if (!transport.blockHashes) return undefined;
    const answer = await transport.blockHashes([baseHash]);
    const blocks = answer.chunks.find((c) => c.hash === baseHash)?.blocks;
    return blocks ? differingRuns(data, blocks, answer.blockSize) : undefined;
  };
}
