import { RefugeError, isRefugeError } from '../core/errors.js';
import { sleep } from '../core/durations.js';
import type { BlockDevice } from '../nbd/block-device.js';
import { chunkCount } from '../store/chunks.js';
import { findDisk, type DiskManifest, type PointManifest } from '../store/manifest.js';
import type { ReplicaStore } from '../store/replica-store.js';
import { forEachChunk } from '../store/tree.js';

export interface PointDeviceOptions {
  /** How long one read keeps retrying a store that does not answer before failing it with EIO (default 10 min). */
  retryForMs?: number;
  /**
   * How long one attempt at a store read may take before it counts as failed and is retried (default 15 s): a
   * link that drops packets, rather than refusing connections, leaves a request hanging with no error at all.
   */
  attemptTimeoutMs?: number;
  /** Decoded chunks kept in memory (default 64: 16 MiB of 256 KiB chunks). */
  cacheChunks?: number;
  /** Chunks read ahead after each read, so a sequential reader (hydration) overlaps store latency (default 4). */
  readAhead?: number;
}

/** What a served point has done, for hydration progress and the dropped-link tests. */
export interface PointDeviceStats {
  readRequests: number;
  chunksFetched: number;
  /** Store reads that failed and were retried (a dropped link to the store shows here). */
  retries: number;
  /** Reads that failed for good (returned EIO to the client). */
  failedReads: number;
  lastError?: string;
}

/** Chunk hashes are looked up a window (one span of tree leaves) at a time, never the whole disk's list. */
const WINDOW_CHUNKS = 4096;

/**
 * One disk of a recovery point as a read-only block device, read straight from the replica store: what instant
 * recovery serves over NBD to the recovered VM (under a local copy-on-write overlay) and to its hydration.
 *
 * Every byte comes from `ReplicaStore.getChunk` (hash-checked); zero chunks are never read. A store that stops
 * answering (a dropped link, an unmounted share, an object store restarting) does not fail the guest's I/O: a read
 * retries with backoff for `retryForMs`, holding the request (the guest sees a slow disk); only an integrity
 * error (damaged data) or a store gone for longer fails it, as EIO.
 */
export class PointBlockDevice implements BlockDevice {
  readonly readOnly = true;
  readonly sizeBytes: number;
  readonly stats: PointDeviceStats = { readRequests: 0, chunksFetched: 0, retries: 0, failedReads: 0 };
  private readonly disk: DiskManifest;
  private readonly windows = new Map<number, Promise<(string | undefined)[]>>();
  private readonly cache = new Map<number, Promise<Buffer>>();
  private closed = false;

  constructor(
    private readonly store: ReplicaStore,
    private readonly point: PointManifest,
    diskName: string,
    private readonly o: PointDeviceOptions = {},
  ) {
    this.disk = findDisk(point, diskName);
    this.sizeBytes = this.disk.sizeBytes;
  }

  get diskName(): string {
    return this.disk.name;
  }

  async read(target: Buffer, offset: number): Promise<void> {
    this.stats.readRequests++;
    const cs = this.disk.chunkSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + target.length - 1) / cs);
    try {
      await Promise.all(
        Array.from({ length: last - first + 1 }, async (_, n) => {
          const i = first + n;
          const data = await this.chunk(i);
          const chunkStart = i * cs;
          const from = Math.max(offset, chunkStart);
          const to = Math.min(offset + target.length, chunkStart + cs);
          if (data) data.copy(target, from - offset, from - chunkStart, to - chunkStart);
          else target.fill(0, from - offset, to - offset);
        }),
      );
    } catch (err) {
      this.stats.failedReads++;
      throw Object.assign(new Error(`reading point ${this.point.id} disk ${this.disk.name} at ${offset}: ${(err as Error).message}`), { code: 'EIO' });
    }
    const count = chunkCount(this.sizeBytes, cs);
    for (let i = last + 1; i <= Math.min(count - 1, last + (this.o.readAhead ?? 4)); i++) void this.chunk(i).catch(() => undefined);
  }

  write(): never {
    throw Object.assign(new Error('a recovery point is read-only'), { code: 'EPERM' });
  }
  writeZeroes(): never {
    return this.write();
  }
  trim(): void {}
  flush(): void {}

  /** Stops retrying: pending reads fail at their next attempt. */
  close(): void {
    this.closed = true;
  }

  /** Chunk `i`'s bytes, or undefined for a zero chunk. */
  private async chunk(i: number): Promise<Buffer | undefined> {
    const hash = await this.hashOf(i);
    if (hash === undefined) return undefined;
    let p = this.cache.get(i);
    if (p) {
      this.cache.delete(i); // re-insert: the map's order is the LRU order
      this.cache.set(i, p);
      return p;
    }
    p = this.withRetry(() => this.store.getChunk(hash, ` (point ${this.point.id}, disk ${this.disk.name}, chunk ${i})`));
    this.cache.set(i, p);
    p.then(() => this.stats.chunksFetched++, () => this.cache.delete(i));
    const limit = this.o.cacheChunks ?? 64;
    while (this.cache.size > limit) this.cache.delete(this.cache.keys().next().value as number);
    return p;
  }

  private async hashOf(i: number): Promise<string | undefined> {
    const w = Math.floor(i / WINDOW_CHUNKS);
    let window = this.windows.get(w);
    if (!window) {
      const count = chunkCount(this.disk.sizeBytes, this.disk.chunkSize);
      const from = w * WINDOW_CHUNKS;
      window = this.withRetry(async () => {
        const hashes = new Array<string | undefined>(Math.min(WINDOW_CHUNKS, count - from));
        await forEachChunk(this.disk.root, count, this.store.blobs, (j, h) => void (hashes[j - from] = h), from, Math.min(count, from + WINDOW_CHUNKS));
        return hashes;
      });
      this.windows.set(w, window);
      window.catch(() => this.windows.delete(w));
      if (this.windows.size > 16) this.windows.delete(this.windows.keys().next().value as number);
    }
    return (await window)[i - w * WINDOW_CHUNKS];
  }

  private async withRetry<T>(call: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.o.retryForMs ?? 600_000);
    for (let attempt = 0; ; attempt++) {
      try {
        return await withTimeout(call(), this.o.attemptTimeoutMs ?? 15_000);
      } catch (err) {
        this.stats.lastError = (err as Error).message;
        // Damaged data stays damaged: retrying an integrity error would only hide it.
        if (isRefugeError(err, 'integrity') || isRefugeError(err, 'invalid_argument') || this.closed || Date.now() >= deadline) throw err;
        this.stats.retries++;
        await sleep(Math.min(2000, 50 * 2 ** Math.min(attempt, 6)));
      }
    }
  }
}

/** `p`, or a rejection when it has not settled within `ms` (the attempt itself is abandoned, not cancelled). */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RefugeError('unavailable', `the replica store did not answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The disks of a point that exist (a clear error before anything is served for a disk the point lacks). */
export function pointDiskNames(point: PointManifest): string[] {
  if (point.disks.length === 0) throw new RefugeError('failed_precondition', `point ${point.id} has no disks`);
  return point.disks.map((d) => d.name);
}
