import { RefugeError, isRefugeError } from '../core/errors.js';
import { forEachLimit } from '../core/concurrency.js';
import { BLOB_DELTA } from './blob-codec.js';
import { corruptBlob, type BlobStore } from './blob-store.js';
import { packKey } from './pack.js';
import { workerPool } from './worker-pool.js';

/**
 * Reads many blobs fast: groups them by pack, reads each pack's needed part in large ranges (small gaps are read
 * through rather than split into more requests), and decodes and hash-checks them on every core. Used by restore,
 * verify and garbage collection. Each blob reaches `onBlob` once, as its raw bytes or as the reason it is damaged.
 */

const MAX_GAP = 256 * 1024;
/** The longest pack range read at once (a single larger blob is read alone). */
export const MAX_RANGE = 16 * 1024 * 1024;

export interface Wanted {
  hash: string;
  offset: number;
  length: number;
  flags: number;
  rawLength: number;
}

export interface BlobProblem {
  object: string;
  blob: string;
  problem: string;
}

export interface PackRange {
  packId: string;
  start: number;
  end: number;
  items: Wanted[];
}

/**
 * Groups blobs into pack ranges to read (sorted by pack and offset; small gaps are read through). Blobs the index
 * does not locate (pending or unknown) and, unless `deltas`, delta blobs come back apart, to be read one by one.
 */
export function planRanges(blobs: BlobStore, hashes: Iterable<string>, o: { deltas?: boolean } = {}): { ranges: PackRange[]; individually: string[] } {
  const byPack = new Map<string, Wanted[]>();
  const individually: string[] = [];
  for (const hash of hashes) {
    const loc = blobs.location(hash);
    // A delta needs its chain's other blobs, wherever they are: BlobStore.read follows it (or, with `deltas`, the
    // caller reads its chain's stored bytes by these ranges too).
    if (!loc || (loc.flags & BLOB_DELTA && !o.deltas)) {
      individually.push(hash);
      continue;
    }
    let list = byPack.get(loc.packId);
    if (!list) byPack.set(loc.packId, (list = []));
    list.push({ hash, offset: loc.offset, length: loc.length, flags: loc.flags, rawLength: loc.rawLength });
  }
  const ranges: PackRange[] = [];
  for (const [packId, list] of byPack) {
    list.sort((a, b) => a.offset - b.offset);
    let current: PackRange | undefined;
    for (const w of list) {
      if (current && w.offset - current.end <= MAX_GAP && w.offset + w.length - current.start <= MAX_RANGE) {
        current.items.push(w);
        current.end = Math.max(current.end, w.offset + w.length);
      } else {
        current = { packId, start: w.offset, end: w.offset + w.length, items: [w] };
        ranges.push(current);
      }
    }
  }
  return { ranges, individually };
}

export async function readBlobs(
  blobs: BlobStore,
  hashes: Iterable<string>,
  onBlob: (hash: string, raw: Buffer | BlobProblem) => void | Promise<void>,
  options: { concurrency?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const { ranges, individually } = planRanges(blobs, hashes);
  const one = async (hash: string): Promise<void> => {
    let raw: Buffer;
    try {
      raw = await blobs.read(hash);
    } catch (err) {
      if (!isRefugeError(err, 'integrity')) throw err;
      const object = typeof err.details.object === 'string' ? err.details.object : `blob ${hash}`;
      return onBlob(hash, { object, blob: hash, problem: err.message });
    }
    return onBlob(hash, raw);
  };
  const pool = workerPool();
  await forEachLimit(ranges, options.concurrency ?? 4, async (r) => {
    options.signal?.throwIfAborted();
    let data: Buffer;
    try {
      data = await blobs.backend.getRange(packKey(r.packId), r.start, r.end - r.start);
    } catch (err) {
      // A pack moved by garbage collection since the index was read: fall back to one read per blob, which retries.
      if (!isRefugeError(err, 'not_found')) throw RefugeError.wrap(err, `reading pack ${packKey(r.packId)}`);
      for (const w of r.items) await one(w.hash);
      return;
    }
    const complete = r.items.filter((w) => w.offset + w.length - r.start <= data.length);
    for (const w of r.items) {
      if (!complete.includes(w)) await onBlob(w.hash, { object: packKey(r.packId), blob: w.hash, problem: corruptBlob(r.packId, w.hash, 'pack is truncated').message });
    }
    const reply = await pool.run({
      op: 'decode',
      key: blobs.o.key,
      naming: blobs.o.naming,
      data,
      items: complete.map((w) => ({ offset: w.offset - r.start, length: w.length, flags: w.flags, rawLength: w.rawLength, hash: w.hash })),
    }, true);
    const raw = Buffer.from(reply.raw);
    let at = 0;
    for (const [i, item] of reply.items.entries()) {
      const w = complete[i] as Wanted;
      if ('problem' in item) {
        await onBlob(w.hash, { object: packKey(r.packId), blob: w.hash, problem: corruptBlob(r.packId, w.hash, item.problem).message });
      } else {
        await onBlob(w.hash, raw.subarray(at, at + item.rawLength));
        at += item.rawLength;
      }
    }
  });
  for (const hash of individually) await one(hash);
}
