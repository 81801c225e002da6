import { open } from 'node:fs/promises';
import { forEachLimit } from '../core/concurrency.js';
import { chunkCount, chunkHash, chunkLength, isZero } from '../store/chunks.js';

/**
 * Scan-and-compare capture: read a disk image in chunk-sized, chunk-aligned pieces, hash each, and report the
 * chunks whose hash differs from the previous point's. Changed chunks are handed to `ship` in batches of about
 * `batchBytes`, so the agent holds at most one batch in memory however large the disk.
 */
export interface ScanResult {
  sizeBytes: number;
  hashes: (string | null)[];
  changes: [number, string | null][];
  changedBytes: number;
}

export interface ScanOptions {
  path: string;
  chunkSize: number;
  /** The chunk hashes of the previous point, or null when unknown (then every chunk is reported, zeros too). */
  previous: (string | null)[] | null;
  ship(batch: { hash: string; data: Buffer }[]): Promise<void>;
  onProgress?(doneBytes: number): void;
  batchBytes?: number;
  signal?: AbortSignal;
}

export async function scanDisk(o: ScanOptions): Promise<ScanResult> {
  const file = await open(o.path, 'r');
  try {
    const sizeBytes = (await file.stat()).size;
    const count = chunkCount(sizeBytes, o.chunkSize);
    const hashes: (string | null)[] = new Array<string | null>(count).fill(null);
    const changes: [number, string | null][] = [];
    const batchLimit = o.batchBytes ?? 16 * 1024 * 1024;
    let batch: { hash: string; data: Buffer }[] = [];
    let batchSize = 0;
    let changedBytes = 0;
    for (let i = 0; i < count; i++) {
      o.signal?.throwIfAborted();
      const length = chunkLength(sizeBytes, o.chunkSize, i);
      const data = Buffer.allocUnsafe(length);
      const { bytesRead } = await file.read(data, 0, length, i * o.chunkSize);
      if (bytesRead !== length) throw new Error(`short read of ${o.path} at chunk ${i} (disk shrank during the scan?)`);
      const hash = isZero(data) ? null : chunkHash(data);
      hashes[i] = hash;
      if (o.previous === null || (o.previous[i] ?? null) !== hash) {
        changes.push([i, hash]);
        changedBytes += length;
        if (hash) {
          batch.push({ hash, data });
          batchSize += length;
        }
      }
      if (batchSize >= batchLimit) {
        await o.ship(batch);
        batch = [];
        batchSize = 0;
      }
      o.onProgress?.((i + 1) * o.chunkSize > sizeBytes ? sizeBytes : (i + 1) * o.chunkSize);
    }
    if (batch.length > 0) await o.ship(batch);
    return { sizeBytes, hashes, changes, changedBytes };
  } finally {
    await file.close();
  }
}

/** Uploads the chunks of a batch the replicator does not have yet, a few at a time. */
export async function shipMissing(
  batch: { hash: string; data: Buffer }[],
  client: { missing(hashes: string[]): Promise<string[]>; putChunk(hash: string, data: Uint8Array): Promise<void> },
): Promise<number> {
  const missing = new Set(await client.missing(batch.map((c) => c.hash)));
  const toSend = batch.filter((c) => missing.delete(c.hash)); // delete: send a chunk repeated in the batch once
  await forEachLimit(toSend, 4, (c) => client.putChunk(c.hash, c.data));
  return toSend.reduce((n, c) => n + c.data.length, 0);
}
