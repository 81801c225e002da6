/**
 * Restore of a point made of delta blobs (store format 4) against the same history in format 3: a 256 MiB disk of
 * random and text-like leaves, then `--points` cdp-like points each patching every chunk with one 8 KiB write, then
 * the last point restored to a raw image (ReplicaStore.materialize). Prints seconds per restore and MB/s.
 * Usage: npx tsx bench/delta-restore.ts [--points 8] [--rounds 3] [--dir DIR]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodePatch } from '../src/protocol/chunk-encoding.js';
import { FilesystemBackend } from '../src/store/backends/filesystem.js';
import { LEAF_SIZE, blobName } from '../src/store/chunks.js';
import type { PointManifest } from '../src/store/manifest.js';
import { ReplicaStore } from '../src/store/replica-store.js';
import type { StoreFormat } from '../src/store/store-config.js';

const { values } = parseArgs({ options: { points: { type: 'string', default: '8' }, rounds: { type: 'string', default: '3' }, dir: { type: 'string' } } });
const CHUNK = 256 * 1024;
const SIZE = 256 * 1024 * 1024;
const name = (b: Uint8Array) => blobName(b, 'leaf16');

function image(): Buffer {
  const d = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE / LEAF_SIZE; i++) {
    if (i % 3 === 0) randomBytes(LEAF_SIZE).copy(d, i * LEAF_SIZE);
    else d.fill(`leaf ${i}; `, i * LEAF_SIZE, (i + 1) * LEAF_SIZE);
  }
  return d;
}

async function history(format: StoreFormat, dir: string, disk: Buffer): Promise<{ store: ReplicaStore; last: PointManifest }> {
  const store = await ReplicaStore.open(await FilesystemBackend.create(join(dir, `f${format}`)), { create: true, format, chunkSize: CHUNK });
  const chunks = SIZE / CHUNK;
  const all: { hash: string; data: Buffer }[] = [];
  for (let i = 0; i < chunks; i++) all.push({ hash: name(disk.subarray(i * CHUNK, (i + 1) * CHUNK)), data: disk.subarray(i * CHUNK, (i + 1) * CHUNK) });
  await store.putChunks(all);
  let last = await store.commitPoint({ replicationId: 'rep_b', parentId: null, capturedAt: new Date(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: SIZE, changes: all.map((c, i) => [i, c.hash] as [number, string]) }] });
  for (let p = 1; p <= Number(values.points); p++) {
    const uploads = [];
    const changes: [number, string][] = [];
    for (let i = 0; i < chunks; i++) {
      const chunk = disk.subarray(i * CHUNK, (i + 1) * CHUNK);
      const before = name(chunk);
      const at = ((p * 7 + i) % 32) * 8 * 1024;
      randomBytes(8 * 1024).copy(chunk, at);
      uploads.push({ hash: name(chunk), base: before, patch: encodePatch(chunk, [[at, 8 * 1024]]), chunkLength: CHUNK });
      changes.push([i, name(chunk)]);
    }
    for (let i = 0; i < uploads.length; i += 256) await store.putPatchedChunks(uploads.slice(i, i + 256));
    last = await store.commitPoint({ replicationId: 'rep_b', parentId: last.id, capturedAt: new Date(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: SIZE, changes }] });
  }
  return { store, last };
}

const dir = values.dir ?? (await mkdtemp(join(tmpdir(), 'refuge-delta-restore-')));
try {
  for (const format of [4, 3] as StoreFormat[]) {
    const disk = image();
    const { store, last } = await history(format, dir, disk);
    const times: number[] = [];
    for (let r = 0; r < Number(values.rounds); r++) {
      const out = join(dir, `restore-f${format}.img`);
      const started = performance.now();
      await store.materialize(last, 'disk0', out, { sync: false });
      times.push((performance.now() - started) / 1000);
      if (!(await readFile(out)).equals(disk)) throw new Error(`format ${format}: the restored image differs`);
      await rm(out);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)] as number;
    process.stdout.write(`format ${format}: ${Number(values.points)} points on 256 MiB, restore of the last: ${times.map((t) => t.toFixed(2)).join(', ')} s; median ${median.toFixed(2)} s (${(SIZE / 1e6 / median).toFixed(0)} MB/s)\n`);
    await store.close();
  }
} finally {
  if (!values.dir) await rm(dir, { recursive: true, force: true });
}
