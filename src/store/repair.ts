import { isRefugeError } from '../core/errors.js';
import { encodeIndexFile } from './index-file.js';
import { readIndexFiles } from './inspect.js';
import { packIdOfKey, packKey, parsePack, type BlobEntry, type PackInfo } from './pack.js';
import { PackRewriter, checkPackBlobs } from './pack-rewriter.js';
import type { ReplicaStore } from './replica-store.js';
import { verifyStore, type StoreVerifyResult } from './verify.js';

/**
 * Repair after bit rot (reliability R4): the damaged blobs are made *missing*, so the source sends them again.
 * 1. `verify` finds every damaged pack.
 * 2. Under the gc and exclusive locks: the blobs of a damaged pack that still decode to their hash are copied into
 *    new packs; the index files naming a damaged pack are replaced by one that names the new packs and every other
 *    pack they named; then the damaged packs are deleted (after every index file naming them: store-format.md).
 * 3. Each replication with a point that used a lost blob gets a resync request (`repairs/<replicationId>.json`).
 *    Its next commit is refused once with `conflict`, so its agent compares every chunk against the latest point
 *    and uploads what the store lacks: the lost chunks come back from the source, under the same names, and every
 *    point referencing them (of any replication) is whole again.
 * Chunks no source holds any more (only old points had those bytes) stay missing; `verify` keeps naming them.
 */

export interface RepairResult {
  /** What verify found before the repair. */
  found: StoreVerifyResult['problems'];
  packsRewritten: number;
  /** Blobs of damaged packs that were intact and kept. */
  blobsKept: number;
  /** Blobs that were lost (now missing): data chunks the source sends again, tree nodes rebuilt by the resync's commit. */
  lost: { hash: string; type: BlobEntry['type']; pack: string }[];
  /** Replications asked to resynchronize. */
  resyncRequested: string[];
}

export const REPAIRS_PREFIX = 'repairs/';
export const repairKey = (replicationId: string): string => `${REPAIRS_PREFIX}${replicationId}.json`;

export async function repairStore(store: ReplicaStore): Promise<RepairResult> {
  const verified = await verifyStore(store);
  const damagedPacks = new Set(verified.problems.filter((p) => p.object.startsWith('packs/')).map((p) => packIdOfKey(p.object)));
  const result: RepairResult = { found: verified.problems, packsRewritten: 0, blobsKept: 0, lost: [], resyncRequested: [] };
  if (damagedPacks.size === 0) return result;

  const gcLock = await store.locks.acquire('gc', 'repair');
  const exclusive = await store.locks.acquire('exclusive', 'repair: replacing damaged packs');
  try {
    const { files } = await readIndexFiles(store);
    const listed = new Map<string, PackInfo>();
    for (const f of files) for (const p of f.packs) if (damagedPacks.has(p.id) && !listed.has(p.id)) listed.set(p.id, p);

    const rewriter = new PackRewriter(store);
    const written = rewriter.written;
    for (const id of damagedPacks) {
      const key = packKey(id);
      const data = await store.backend.get(key).catch((err: unknown) => {
        if (isRefugeError(err, 'not_found')) return undefined;
        throw err;
      });
      // The index's view of the pack, or its own header when no index names it (the header may be what rotted).
      let blobs = listed.get(id)?.blobs;
      if (!blobs && data) blobs = tryParse(data, id, store);
      if (!blobs) continue;
      const problems = data ? await checkPackBlobs(store, data, blobs) : [];
      for (const [i, b] of blobs.entries()) {
        if (!data || problems[i] !== undefined) {
          result.lost.push({ hash: b.hash, type: b.type, pack: key });
          continue;
        }
        await rewriter.copy(b, data);
        result.blobsKept++;
      }
    }
    await rewriter.flush();

    // One index file for the new packs and everything else the replaced index files named; then the old files.
    const replaced = files.filter((f) => f.packs.some((p) => damagedPacks.has(p.id)));
    const keep = replaced.flatMap((f) => f.packs.filter((p) => !damagedPacks.has(p.id)));
    const packs = [...new Map([...keep, ...written].map((p) => [p.id, p])).values()];
    if (packs.length > 0) {
      const { name, data } = encodeIndexFile(packs, store.key);
      await store.backend.put(name, data);
    }
    for (const f of replaced) await store.backend.delete(f.name);
    for (const id of damagedPacks) await store.backend.delete(packKey(id));
    result.packsRewritten = damagedPacks.size;

    const replications = new Set<string>();
    for (const p of verified.problems) {
      if (!p.object.startsWith('packs/')) continue;
      for (const point of p.points ?? []) replications.add(point.split('/')[1] as string);
    }
    const lostHashes = result.lost.map((b) => b.hash);
    for (const id of replications) {
      await store.backend.put(repairKey(id), Buffer.from(JSON.stringify({ requestedAt: new Date().toISOString(), lost: lostHashes })));
    }
    result.resyncRequested = [...replications].sort();
  } finally {
    await exclusive.release();
    await gcLock.release();
    await store.blobs.refresh();
  }
  return result;
}

function tryParse(data: Buffer, id: string, store: ReplicaStore): BlobEntry[] | undefined {
  try {
    return parsePack(data, id, store.key).blobs;
  } catch (err) {
    if (isRefugeError(err, 'integrity')) return undefined;
    throw err;
  }
}

/**
 * Takes the resync request a repair left for a replication, if any (the replicator asks before each commit). The
 * store's index is re-read first, so the blobs the repair dropped are reported missing from now on.
 */
export async function takeResyncRequest(store: ReplicaStore, replicationId: string): Promise<boolean> {
  if (!(await store.backend.exists(repairKey(replicationId)))) return false;
  await store.blobs.refresh();
  await store.backend.delete(repairKey(replicationId));
  return true;
}
