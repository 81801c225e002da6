import { LEAF_SIZE, leafDigests, nameFromLeafDigests } from '../../store/chunks.js';
import type { CutDisk } from '../capture/capture-mode.js';
import type { ChunkHashes } from '../chunk-hashes.js';
import { leafRanges, trusted, zeroDigests, type LeafDigestFile } from '../leaf-digests.js';
import type { ChunkUploader } from './chunk-uploader.js';

/** A chunk shipped from its written leaves: its new name (null: zeros), its length, and the bytes read of it. */
export interface LeafShipped {
  index: number;
  hash: string | null;
  length: number;
  readBytes: number;
}

/**
 * Chunks of a cdp cut worked on at once: their written leaves read (on libuv's pool) while the ones before are
 * hashed and handed to the uploader. One at a time, each chunk waited for three round trips to the pool (its
 * digests, its leaves, the digests written back): 1-2 ms a chunk, 8-16 s for a P5 point of ~8,000 chunks.
 */
const WINDOW = 32;
/** At most this much chunk memory per window (32 chunks of 256 KiB; fewer of larger chunks: P11's budget). */
const WINDOW_BYTES = 8 * 1024 * 1024;

/**
 * Whether the leaf path fits chunks of `chunkSize`: whole leaves per chunk (chunks of 4 or 8 KiB would share a
 * leaf's digest slot with their neighbours; they are read whole, which costs as little).
 */
export const leafPathFits = (chunkSize: number): boolean => chunkSize % LEAF_SIZE === 0;

/**
 * The chunks of a cdp cut whose new name follows from the leaves they wrote (store format 3,
 * docs/design-delta-points.md): per window of chunks, the digests the agent keeps (../leaf-digests.ts) are read in
 * one read and trusted for a chunk only where they name its base as remembered; its written leaves are read from
 * the cut and hashed; its name computed from all its digests; it goes to the uploader as a patch of its written
 * runs; and the window's digests are written back in one write. A chunk that cannot go this way (no runs, a patch
 * not worth it, digests unknown or stale) is given to `readWhole`, for the caller to read and hash whole.
 */
export async function shipByLeaves(
  o: {
    chunkSize: number;
    disk: CutDisk;
    file: LeafDigestFile;
    previous: ChunkHashes;
    uploader: ChunkUploader;
    /**
     * Chunks to read whole anyway: a rotating sample, so that a write the change tracking missed (a bug, or the
     * image written behind the agent's back) is caught within a bounded number of points, as the whole-chunk path
     * catches it (the replicator's rebuild from the patch then does not give the chunk's name). This path trusts
     * the tracking for the leaves it does not read.
     */
    sampled?: (index: number) => boolean;
    signal?: AbortSignal;
  },
  shipped: (r: LeafShipped) => void,
  readWhole: (index: number) => void,
): Promise<void> {
  const { disk, chunkSize } = o;
  const perChunk = chunkSize / LEAF_SIZE;
  const indexes = disk.chunkIndexes;
  const buffers: Buffer[] = [];
  const windowSize = Math.max(1, Math.min(WINDOW, Math.floor(WINDOW_BYTES / chunkSize)));
  for (let w = 0; w < indexes.length; w += windowSize) {
    o.signal?.throwIfAborted();
    const window = indexes.slice(w, w + windowSize);
    const first = window[0] as number;
    const last = window.at(-1) as number;
    // Sorted chunks: the window's digests are one span of the file (scattered chunks: a span this long at most).
    const span = last - first < 4 * windowSize ? await o.file.readLeaves(first * perChunk, (last - first + 1) * perChunk) : undefined;
    const work = window.map(async (index, n) => {
      const length = Math.min(chunkSize, disk.sizeBytes - index * chunkSize);
      const runs = disk.changedRuns?.(index);
      const base = o.previous.get(index);
      const data = (buffers[n] ??= Buffer.allocUnsafeSlow(chunkSize)).subarray(0, length);
      if (!runs || runs.length === 0 || !disk.readRanges || o.sampled?.(index) || !o.uploader.goesAsPatch({ hash: '', data, base, runs })) return undefined;
      const leaves = Math.ceil(length / LEAF_SIZE);
      const at = (index - first) * perChunk * 32;
      const kept = span ? span.subarray(at, at + leaves * 32) : await o.file.readLeaves(index * perChunk, leaves);
      const digests = base === null ? Buffer.from(zeroDigests(length)) : trusted(kept, length, base);
      if (!digests) return undefined;
      const ranges = leafRanges(runs, length);
      await disk.readRanges(index, ranges, data);
      return { index, length, runs, base, data, digests, ranges };
    });
    // Awaited in order below; one failing while an earlier one is handled (a read error, the cut abandoned) must not
    // go unhandled meanwhile (it would end the process).
    for (const p of work) p.catch(() => undefined);
    for (const [n, pending] of work.entries()) {
      const c = await pending;
      if (!c) {
        readWhole(window[n] as number);
        continue;
      }
      // Ranges start on a leaf: each range's leaves hashed into their places among the chunk's digests.
      for (const [from, size] of c.ranges) leafDigests(c.data.subarray(from, from + size), c.digests.subarray((from / LEAF_SIZE) * 32));
      const hash = c.digests.equals(zeroDigests(c.length)) ? null : nameFromLeafDigests(c.length, c.digests);
      if (span) c.digests.copy(span, (c.index - first) * perChunk * 32);
      else await o.file.writeLeaves(c.index * perChunk, c.digests);
      // The uploader copies the patch out of `data` before the buffer serves the next window.
      if (hash !== null && hash !== c.base) await o.uploader.add({ hash, data: c.data, base: c.base, runs: c.runs });
      shipped({ index: c.index, hash, length: c.length, readBytes: c.ranges.reduce((s, [, size]) => s + size, 0) });
    }
    if (span) await o.file.writeLeaves(first * perChunk, span);
  }
}
