import { open } from 'node:fs/promises';
import { RefugeError, isRefugeError } from '../core/errors.js';
import { forEachLimit } from '../core/concurrency.js';
import { BLOB_DELTA } from './blob-codec.js';
import type { BlobLocation } from './blob-table.js';
import { corruptBlob } from './blob-store.js';
import { MAX_RANGE, planRanges } from './bulk-read.js';
import { chunkCount, chunkLength } from './chunks.js';
import { findDisk, type PointManifest } from './manifest.js';
import { packKey } from './pack.js';
import type { ProgressCallback, ReplicaStore } from './replica-store.js';
import { forEachChunk } from './tree.js';
import { workerPool, type RestoreItem } from './worker-pool.js';

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

/** Pack ranges are read into reused buffers of the longest range planned. */
const RANGE_BUFFER_BYTES = MAX_RANGE;
const SPARE_BUFFERS = 6;
/** Delta chunks decoded per worker task (their chains gathered first: a few KiB to a chunk's size a member). */
const DELTA_BATCH = 64;

/**
 * Restores one disk of a point to a raw image: the file is created empty at the disk's size, so zero chunks stay
 * holes (sparse). Every other chunk is read by pack range (large reads, bulk-read.ts) and handed to the worker
 * threads, which decode, hash-check and write it at each offset that holds it, on every core at once; decoded
 * bytes never come back to the main thread. A damaged chunk fails the restore naming the pack, the chunk, the
 * point and the disk.
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
  const where = (_hash: string, at: number[]) => ` (point ${point.id}, disk ${diskName}, chunk ${at[0]})`;
  try {
    await file.truncate(disk.sizeBytes);
    const places = new Map<string, number[]>(); // chunk hash -> the chunk indexes holding it
    await forEachChunk(disk.root, count, store.blobs, (i, h) => {
      const list = places.get(h);
      if (list) list.push(i);
      else places.set(h, [i]);
    });
    /** Where a chunk goes in the image; a stored size that does not fit its place is damage, caught before writing. */
    const positions = (hash: string): number[] => {
      const list = places.get(hash) as number[];
      const size = store.blobs.location(hash)?.rawLength;
      const misfit = list.find((i) => size !== undefined && size !== chunkLength(disk.sizeBytes, cs, i));
      if (misfit !== undefined) {
        throw new RefugeError('integrity', `chunk ${hash} has ${size} bytes where disk '${diskName}' needs ${chunkLength(disk.sizeBytes, cs, misfit)}${where(hash, list)}`);
      }
      return list.map((i) => i * cs);
    };
    const total = disk.storedBytes;
    const { ranges, individually } = planRanges(store.blobs, places.keys());
    const pool = workerPool();
    // Pack ranges are read into a few shared buffers that the workers see without a copy or a transfer, reused once
    // a worker is done with one: a fresh (or transferred) buffer per range made a restore's gigabyte of packs cost
    // seconds of page faults and of garbage collections forced by external memory on every thread.
    const spare: SharedArrayBuffer[] = [];
    const writeOne = async (hash: string) => {
      const raw = await store.getChunk(hash, where(hash, places.get(hash) as number[]));
      for (const at of positions(hash)) {
        await file.write(raw, 0, raw.length, at);
        written += raw.length;
      }
    };
    await forEachLimit(ranges, options.concurrency ?? 4, async (r) => {
      options.signal?.throwIfAborted();
      let data: Buffer;
      const length = r.end - r.start;
      const buffer = spare.pop() ?? new SharedArrayBuffer(Math.max(RANGE_BUFFER_BYTES, length));
      try {
        data = await store.backend.getRange(packKey(r.packId), r.start, length, buffer.byteLength >= length ? new Uint8Array(buffer) : undefined);
      } catch (err) {
        // A pack moved by garbage collection since the index was read: one read per chunk finds it again.
        if (!isRefugeError(err, 'not_found')) throw RefugeError.wrap(err, `reading pack ${packKey(r.packId)}`);
        for (const w of r.items) await writeOne(w.hash);
        return;
      }
      const short = r.items.find((w) => w.offset + w.length - r.start > data.length);
      if (short) throw new RefugeError('integrity', `${corruptBlob(r.packId, short.hash, 'pack is truncated').message}${where(short.hash, places.get(short.hash) as number[])}`, { details: { object: packKey(r.packId), blob: short.hash, point: point.id } });
      const items = r.items.map((w) => ({ offset: w.offset - r.start, length: w.length, flags: w.flags, rawLength: w.rawLength, hash: w.hash, positions: positions(w.hash) }));
      const reply = await pool.run({ op: 'restore', key: store.key, naming: store.naming, data, fd: file.fd, items }, true);
      if (spare.length < SPARE_BUFFERS) spare.push(buffer);
      const bad = reply.items.findIndex((it) => it.problem !== undefined);
      if (bad >= 0) {
        const w = r.items[bad] as (typeof r.items)[number];
        throw new RefugeError('integrity', `${corruptBlob(r.packId, w.hash, reply.items[bad]?.problem ?? '').message}${where(w.hash, places.get(w.hash) as number[])}`, {
          hint: 'run `refuge store verify` to find every damaged object; a resync repairs it from the source',
          details: { object: packKey(r.packId), blob: w.hash, point: point.id },
        });
      }
      written += reply.written;
      options.onProgress?.(written, total);
    });
    // Deltas (delta-frame.ts): their chains' stored bytes are gathered here, a few KiB a member, and decoded and
    // checked on the workers like the rest, a batch a task; anything else read one by one (pending, moved).
    const deltas = new Set(individually.filter((h) => (store.blobs.location(h)?.flags ?? 0) & BLOB_DELTA));
    const batches: string[][] = [];
    const list = [...deltas];
    for (let i = 0; i < list.length; i += DELTA_BATCH) batches.push(list.slice(i, i + DELTA_BATCH));
    await forEachLimit(batches, options.concurrency ?? 4, async (batch) => {
      options.signal?.throwIfAborted();
      // Every member of the batch's chains, from the index (no I/O), read by pack range as the rest of the disk is.
      const chains = batch.map((hash) => store.blobs.chainOf(hash));
      const stored = new Map<string, Buffer>();
      const { ranges: memberRanges, individually: lost } = planRanges(store.blobs, new Set(chains.flat()), { deltas: true });
      if (lost.length > 0) throw new RefugeError('integrity', `blob ${lost[0] as string} of a delta's chain is missing from the store${where(batch[0] as string, places.get(batch[0] as string) as number[])}`, { details: { blob: lost[0], point: point.id } });
      await Promise.all(memberRanges.map(async (r) => {
        const data = await store.backend.getRange(packKey(r.packId), r.start, r.end - r.start);
        for (const w of r.items) stored.set(w.hash, data.subarray(w.offset - r.start, w.offset - r.start + w.length));
      }));
      const parts: Buffer[] = [];
      let at = 0;
      const add = (hash: string) => {
        const b = stored.get(hash);
        if (!b || b.length !== store.blobs.location(hash)?.length) throw new RefugeError('integrity', `${corruptBlob(store.blobs.location(hash)?.packId ?? '?', hash, 'pack is truncated').message}`, { details: { blob: hash, point: point.id } });
        parts.push(b);
        at += b.length;
        return { offset: at - b.length, length: b.length };
      };
      const items: RestoreItem[] = [];
      const packs: string[] = [];
      for (const [i, hash] of batch.entries()) {
        const loc = store.blobs.location(hash) as BlobLocation;
        const [own, ...bases] = chains[i] as string[];
        items.push({ ...add(own as string), flags: loc.flags, rawLength: loc.rawLength, hash, positions: positions(hash), chain: bases.map(add) });
        packs.push(loc.packId);
      }
      const reply = await pool.run({ op: 'restore', key: store.key, naming: store.naming, data: Buffer.concat(parts, at), fd: file.fd, items }, true);
      const bad = reply.items.findIndex((it) => it.problem !== undefined);
      if (bad >= 0) {
        const hash = batch[bad] as string;
        throw new RefugeError('integrity', `${corruptBlob(packs[bad] as string, hash, reply.items[bad]?.problem ?? '').message}${where(hash, places.get(hash) as number[])}`, {
          hint: 'run `refuge store verify` to find every damaged object; a resync repairs it from the source',
          details: { object: packKey(packs[bad] as string), blob: hash, point: point.id },
        });
      }
      written += reply.written;
      options.onProgress?.(written, total);
    });
    for (const hash of individually) if (!deltas.has(hash)) await writeOne(hash);
    options.onProgress?.(written, total);
    if (options.sync !== false) await file.sync();
  } catch (err) {
    throw RefugeError.wrap(err, `restoring disk '${diskName}' of point ${point.id} to ${path}`);
  } finally {
    await file.close();
  }
  return { sizeBytes: disk.sizeBytes, writtenBytes: written };
}
