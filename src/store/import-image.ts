import { open } from 'node:fs/promises';
import { RefugeError } from '../core/errors.js';
import { forEachLimit } from '../core/concurrency.js';
import { chunkCount } from './chunks.js';
import type { Consistency, PointManifest } from './manifest.js';
import type { ProgressCallback, ReplicaStore } from './replica-store.js';
import { forEachChunk } from './tree.js';
import { encodedBound, workerPool } from './worker-pool.js';

/**
 * Commits a point from raw disk images read where the store runs: offline seeding (an image carried to the
 * recovery site), `refuge store import`, and the benchmarks. It is the scan-mode data path without the network:
 * the image is read in large batches, and each batch is hashed, compared with the parent point and its changed
 * chunks compressed and sealed on every core (blob-worker.ts `scan`), so only changed chunks are stored.
 */

export interface ImportOptions {
  replicationId: string;
  disks: { name: string; path: string }[];
  /** The parent point: a point id, 'latest' (the default) or null for a first point. */
  parent?: string | null;
  consistency?: Consistency;
  capturedAt?: Date;
  /** Chunk size of the new point's disks (the replication's); default: the store's. */
  chunkSize?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

const BATCH_BYTES = 8 * 1024 * 1024;

export async function importImages(store: ReplicaStore, o: ImportOptions): Promise<PointManifest> {
  const ids = await store.listPointIds(o.replicationId);
  const parentId = o.parent === undefined || o.parent === 'latest' ? (ids.at(-1) ?? null) : o.parent;
  const parent = parentId === null ? null : await store.getPoint(o.replicationId, parentId);
  const cs = o.chunkSize ?? store.chunkSize;
  const files = await Promise.all(o.disks.map(async (d) => ({ ...d, file: await open(d.path, 'r') })));
  try {
    const sizes = await Promise.all(files.map(async (f) => (await f.file.stat()).size));
    const total = sizes.reduce((n, s) => n + s, 0);
    let done = 0;
    const disks = [];
    for (const [n, f] of files.entries()) {
      const size = sizes[n] as number;
      const count = chunkCount(size, cs);
      const base = parent?.disks.find((d) => d.name === f.name && d.sizeBytes === size && d.chunkSize === cs);
      const previous = Buffer.alloc(count * 32); // zeros: "no chunk", so a first point lists every non-zero chunk
      if (base) await forEachChunk(base.root, count, store.blobs, (i, h) => void previous.write(h, i * 32, 32, 'hex'));
      const changes: [number, string | null][] = [];
      const perBatch = Math.max(1, Math.floor(BATCH_BYTES / cs));
      // Buffers for reads and for encoded output, reused across batches. They are shared with the workers rather
      // than transferred: a transferred buffer is new external memory on the receiving thread each time, and the
      // garbage collections that forced cost more than a second per 2 GiB image on every thread.
      const inputs: SharedArrayBuffer[] = [];
      const outputs: SharedArrayBuffer[] = [];
      const batches = Array.from({ length: Math.ceil(count / perBatch) }, (_, b) => b * perBatch);
      await forEachLimit(batches, 3, async (first) => {
        o.signal?.throwIfAborted();
        const offset = first * cs;
        const length = Math.min(perBatch * cs, size - offset);
        // A whole buffer per batch (the last, shorter one gets its own), so it can move to a worker and back.
        const input = length === perBatch * cs ? (inputs.pop() ?? new SharedArrayBuffer(length)) : new SharedArrayBuffer(length);
        const data = new Uint8Array(input);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await f.file.read(data, got, length - got, offset + got);
          if (bytesRead === 0) throw new RefugeError('failed_precondition', `${f.path} shrank while it was read (at ${offset + got} of ${size} bytes)`);
          got += bytesRead;
        }
        const before = previous.subarray(first * 32, (first + Math.ceil(length / cs)) * 32);
        const out = outputs.pop() ?? new SharedArrayBuffer(perBatch * encodedBound(cs));
        const reply = await workerPool().run({ op: 'scan', key: store.key, naming: store.naming, level: store.config.compressionLevel, data, chunkSize: cs, previous: before, out }, true);
        const hashes = Buffer.from(reply.hashes);
        const stored = Buffer.from(reply.stored);
        const encoded = new Map(reply.encoded.map((e) => [e.index, e]));
        let at = 0;
        for (let j = 0; j < hashes.length / 32; j++) {
          if (hashes.compare(before, j * 32, j * 32 + 32, j * 32, j * 32 + 32) === 0) continue;
          const hex = hashes.toString('hex', j * 32, j * 32 + 32);
          const e = encoded.get(j);
          if (!e) {
            changes.push([first + j, null]); // became zeros
            continue;
          }
          changes.push([first + j, hex]);
          const blob = { stored: stored.subarray(at, at + e.storedLength), flags: e.flags, rawLength: e.rawLength };
          at += e.storedLength;
          store.blobs.addNow('data', hex, blob); // copies the bytes: `stored` is reused below
        }
        if (input.byteLength === perBatch * cs) inputs.push(input);
        if (reply.stored.byteLength === out.byteLength) outputs.push(out); // else the output did not fit in `out`
        await store.blobs.settle();
        done += length;
        o.onProgress?.(done, total);
      });
      disks.push({ name: f.name, sizeBytes: size, changes });
    }
    return await store.commitPoint({ replicationId: o.replicationId, parentId, capturedAt: o.capturedAt ?? new Date(), consistency: o.consistency ?? 'crash', disks, chunkSize: cs });
  } catch (err) {
    await store.blobs.discardPending();
    throw err;
  } finally {
    await Promise.all(files.map((f) => f.file.close()));
  }
}
