import { differingRuns, blockDigests, BLOCK_SIZE, type Run } from '../../protocol/chunk-encoding.js';
import { RefugeError, isRefugeError } from '../../core/errors.js';
import { MAX_BLOCK_HASH_CHUNKS, MAX_LISTED_CHUNKS } from '../../protocol/limits.js';
import type { ReplicatorTransport } from '../clients.js';
import type { PointChunksResponse } from '../../protocol/schemas.js';
import { chunkCount } from '../../store/chunks.js';
import { ChunkHashes } from '../chunk-hashes.js';

/**
 * Comparing with the store instead of with remembered hashes: after a resync request, a lost agent state, or the
 * seed point of a re-protect (the former primary's own disks, hashed where they lie), the agent fetches the parent
 * point's chunk hashes, so unchanged chunks are skipped without a query, and patches each changed chunk with only
 * the 4 KiB blocks whose digest differs from the stored chunk's (a two-level hash comparison, like rsync's).
 */
export async function storeBase(transport: ReplicatorTransport, pointId: string, chunkSize: number, diskNames: string[], pageSize = MAX_LISTED_CHUNKS): Promise<Record<string, ChunkHashes>> {
  if (!transport.pointChunks) return {};
  const list = transport.pointChunks.bind(transport);
  const base: Record<string, ChunkHashes> = {};
  // A disk stored in chunks of another size cannot be compared chunk by chunk: it is listed whole (base unknown).
  const hashesOf = (d: PointChunksResponse['disks'][number]) => (d.chunks ? ChunkHashes.fromEntries(chunkCount(d.sizeBytes, d.chunkSize), d.chunks) : ChunkHashes.fromList(d.hashes ?? []));
  for (const disk of diskNames) {
    // Page by page into one ChunkHashes: a disk of millions of chunks never travels, nor is held, as one document.
    let hashes: ChunkHashes | undefined;
    for (let from: number | null = 0; from !== null; ) {
      let page: PointChunksResponse;
      try {
        page = await list(pointId, { disk, from, limit: pageSize });
      } catch (err) {
        // A replicator older than this call answers 404: compare by asking which chunks it lacks, as before.
        if (isRefugeError(err, 'not_found')) return {};
        // One before paging refuses the page's parameters (400): its one listing of every disk is the answer.
        if (from === 0 && isRefugeError(err, 'invalid_argument')) page = await list(pointId);
        else throw err;
      }
      if (page.next === undefined) {
        // A replicator before paging listed every disk at once.
        return Object.fromEntries(page.disks.filter((d) => d.chunkSize === chunkSize).map((d) => [d.name, hashesOf(d)]));
      }
      const d = page.disks[0];
      if (!d || d.chunkSize !== chunkSize) break; // not in the point, or in other chunks
      hashes ??= new ChunkHashes(chunkCount(d.sizeBytes, d.chunkSize));
      for (const [i, h] of d.chunks ?? []) hashes.set(i, h);
      if (page.next !== null && page.next <= from) throw new RefugeError('internal', `the replicator's listing of disk '${disk}' goes back from chunk ${from} to ${page.next}`);
      from = page.next;
    }
    if (hashes) base[disk] = hashes;
  }
  return base;
}

/**
 * Finds the runs of a chunk that differ from its base chunk in the store, by block digests. Lookups made while one
 * is under way go together in the next request (up to the protocol's limit), so a caller that asks for many chunks
 * at once (ship-cut.ts) pays about one round trip per batch, not one per chunk.
 */
export function blockRunsFinder(transport: ReplicatorTransport): (baseHash: string | null, data: Buffer) => Promise<Run[] | undefined> {
  let zeroDigests: string[] | undefined;
  const digestsOf = batchedDigests(transport);
  return async (baseHash, data) => {
    if (baseHash === null) {
      zeroDigests ??= blockDigests(Buffer.alloc(data.length), BLOCK_SIZE);
      return differingRuns(data, zeroDigests, BLOCK_SIZE);
    }
    if (!digestsOf) return undefined;
    const found = await digestsOf(baseHash);
    return found ? differingRuns(data, found.blocks, found.blockSize) : undefined;
  };
}

type Digests = { blocks: string[]; blockSize: number } | undefined;

function batchedDigests(transport: ReplicatorTransport): ((hash: string) => Promise<Digests>) | undefined {
  const ask = transport.blockHashes?.bind(transport);
  if (!ask) return undefined;
  const waiting: { hash: string; resolve(d: Digests): void; reject(err: unknown): void }[] = [];
  let busy = false;
  const pump = async () => {
    busy = true;
    while (waiting.length > 0) {
      const batch = waiting.splice(0, MAX_BLOCK_HASH_CHUNKS);
      try {
        const answer = await ask([...new Set(batch.map((w) => w.hash))]);
        const byHash = new Map(answer.chunks.map((c) => [c.hash, c.blocks]));
        for (const w of batch) {
          const blocks = byHash.get(w.hash);
          w.resolve(blocks ? { blocks, blockSize: answer.blockSize } : undefined);
        }
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    busy = false;
  };
  return (hash) =>
    new Promise<Digests>((resolve, reject) => {
      waiting.push({ hash, resolve, reject });
      if (!busy) void pump();
    });
}
