import { open } from 'node:fs/promises';
import { RefugeError } from '../core/errors.js';
import { readBlobs } from './bulk-read.js';
import { chunkCount, chunkLength } from './chunks.js';
import { findDisk, type PointManifest } from './manifest.js';
import type { ProgressCallback, ReplicaStore } from './replica-store.js';
import { forEachChunk } from './tree.js';

export interface MaterializeOptions {
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  /** Pack ranges read at once. */
  concurrency?: number;
  /**
   * Flush the image to stable storage before returning (default true). A failover's disk must survive a host
   * crash once the machine runs on it; a test failover or a scratch restore may skip it.
   */
  sync?: boolean;
}

const WRITES_IN_FLIGHT = 32;

/**
 * Restores one disk of a point to a raw image: the file is created empty at the disk's size, so zero chunks stay
 * holes (sparse); every other chunk is read by pack range, decoded and hash-checked on every core (bulk-read.ts)
 * and written at each offset that holds it. Nothing is written for a damaged chunk: the restore fails naming the
 * object, the point, the disk and the chunk.
 */
export async function materializeDisk(
  store: ReplicaStore,
  point: PointManifest,
  diskName: string,
  path: string,
  options: MaterializeOptions = {},
): Promise<{ sizeBytes: number; writtenBytes: number }> {
  const disk = findDisk(point, diskName);
  const cs = disk.chunkSize;
  const count = chunkCount(disk.sizeBytes, cs);
  const file = await open(path, 'w', 0o640);
  let written = 0;
  const writes = new Set<Promise<unknown>>();
  try {
    await file.truncate(disk.sizeBytes);
    const places = new Map<string, number[]>(); // chunk hash -> the chunk indexes holding it
    await forEachChunk(disk.root, count, store.blobs, (i, h) => {
      const list = places.get(h);
      if (list) list.push(i);
      else places.set(h, [i]);
    });
    const total = disk.storedBytes;
    await readBlobs(store.blobs, places.keys(), async (hash, raw) => {
      const indexes = places.get(hash) as number[];
      const where = ` (point ${point.id}, disk ${diskName}, chunk ${indexes[0]})`;
      if (!Buffer.isBuffer(raw)) {
        throw new RefugeError('integrity', `${raw.problem}${where}`, { details: { object: raw.object, blob: hash, point: point.id } });
      }
      for (const i of indexes) {
        if (raw.length !== chunkLength(disk.sizeBytes, cs, i)) {
          throw new RefugeError('integrity', `chunk ${hash} has ${raw.length} bytes where disk '${diskName}' needs ${chunkLength(disk.sizeBytes, cs, i)}${where}`);
        }
        const w: Promise<unknown> = file.write(raw, 0, raw.length, i * cs).finally(() => writes.delete(w));
        writes.add(w);
        written += raw.length;
      }
      // Bound the writes in flight (each holds its chunk in memory) without waiting for all of them.
      while (writes.size >= WRITES_IN_FLIGHT) await Promise.race(writes);
      options.onProgress?.(written, total);
    }, options);
    await Promise.all(writes);
    if (options.sync !== false) await file.sync();
  } catch (err) {
    await Promise.allSettled([...writes]);
    throw RefugeError.wrap(err, `restoring disk '${diskName}' of point ${point.id} to ${path}`);
  } finally {
    await file.close();
  }
  return { sizeBytes: disk.sizeBytes, writtenBytes: written };
}
