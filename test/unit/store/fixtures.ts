import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { blobName, chunkCount, chunkLength, isZero, type BlobNaming } from '../../../src/store/chunks.js';
import type { PointManifest } from '../../../src/store/manifest.js';
import { ReplicaStore, type OpenOptions } from '../../../src/store/replica-store.js';
import { STORE_FORMAT, namingOf } from '../../../src/store/store-config.js';

/**
 * Shared pieces of the store tests: temporary folders, a filesystem-backed store with small chunks, the agent's
 * change computation (so points are committed the way production commits them) and byte comparison. Kept here
 * rather than in test/helpers because only the store tests use them (expect-error.ts holds the error assertion,
 * apart, so the backend contract does not load the filesystem backend).
 */

export const CHUNK = 4096;

export interface TempDir {
  path: string;
  cleanup: () => Promise<void>;
}

export async function makeTempDir(prefix = 'refuge-store-test-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

export interface TempStore {
  dir: TempDir;
  /** Root of the filesystem backend: tests reach under it to damage objects the way bit rot would. */
  root: string;
  backend: FilesystemBackend;
  store: ReplicaStore;
  /** A fresh path for a restored image, inside the temporary folder. */
  imagePath(name: string): string;
}

export async function openTempStore(chunkSize = CHUNK, options: Omit<OpenOptions, 'create' | 'chunkSize'> = {}): Promise<TempStore> {
  const dir = await makeTempDir();
  const root = join(dir.path, 'store');
  const backend = await FilesystemBackend.create(root);
  const store = await ReplicaStore.open(backend, { create: true, chunkSize, ...options });
  return { dir, root, backend, store, imagePath: (name) => join(dir.path, name) };
}

/** The pack object holding a blob, as docs/store-format.md defines its key. */
export function packOf(store: ReplicaStore, hash: string): string {
  const loc = store.blobs.location(hash);
  if (!loc) throw new Error(`blob ${hash} is not indexed`);
  return `packs/${loc.packId.slice(0, 2)}/${loc.packId}`;
}

/** Every chunk (data blob) the store's index knows, sorted. */
export async function storedChunkHashes(store: ReplicaStore): Promise<string[]> {
  const { listIndexedBlobs } = await import('../../../src/store/inspect.js');
  return (await listIndexedBlobs(store)).filter((b) => b.type === 'data').map((b) => b.hash).sort();
}

/** Chunk hashes of a disk image, null for all-zero chunks (what the agent's scanner computes). */
export function hashChunks(disk: Buffer, chunkSize: number, naming: BlobNaming = namingOf(STORE_FORMAT)): (string | null)[] {
  return Array.from({ length: chunkCount(disk.length, chunkSize) }, (_, i) => {
    const data = disk.subarray(i * chunkSize, i * chunkSize + chunkLength(disk.length, chunkSize, i));
    return isZero(data) ? null : blobName(data, naming);
  });
}

/** Changes against the previous point's hashes; with no previous point only stored (non-zero) chunks are listed. */
export function diffHashes(hashes: (string | null)[], previous: (string | null)[] | null): [number, string | null][] {
  return hashes.flatMap((h, i): [number, string | null][] => ((previous?.[i] ?? null) !== h ? [[i, h]] : []));
}

/**
 * Commits `disk` as a point of `disk0` the way the agent does: diff against the parent, upload only the chunks the
 * store is missing, then commit. Returns the manifest and the changes sent, for assertions on stats.
 */
export async function commitDisk(
  store: ReplicaStore,
  disk: Buffer,
  opts: {
    replicationId?: string;
    parent?: PointManifest | null;
    /** The hashes the agent remembers from its previous scan; by default the parent manifest's. */
    previous?: (string | null)[];
    capturedAt?: Date;
    /** The point's chunk size (a replication's policy may choose one); by default the store's. */
    chunkSize?: number;
  } = {},
): Promise<{ point: PointManifest; changes: [number, string | null][]; uploaded: number }> {
  const cs = opts.chunkSize ?? store.chunkSize;
  const hashes = hashChunks(disk, cs, store.naming);
  const parent = opts.parent ?? null;
  const changes = diffHashes(hashes, opts.previous ?? (parent ? await store.diskChunks(parent, 'disk0') : null));
  const changed = changes.flatMap(([i, h]) => (h === null ? [] : [{ i, h }]));
  const missing = new Set(await store.missingChunks(changed.map((c) => c.h)));
  let uploaded = 0;
  for (const { i, h } of changed) {
    if (!missing.delete(h)) continue; // already stored, or repeated within this point
    await store.putChunk(h, disk.subarray(i * cs, i * cs + chunkLength(disk.length, cs, i)));
    uploaded++;
  }
  const point = await store.commitPoint({
    replicationId: opts.replicationId ?? 'rep_test',
    parentId: parent?.id ?? null,
    capturedAt: opts.capturedAt ?? new Date(),
    consistency: 'crash',
    disks: [{ name: 'disk0', sizeBytes: disk.length, changes }],
    ...(opts.chunkSize ? { chunkSize: opts.chunkSize } : {}),
  });
  return { point, changes, uploaded };
}

/** Deterministic pseudo-random bytes (mulberry32), so a failing property run can be replayed from its seed. */
export function seededBytes(seed: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let a = seed >>> 0;
  for (let i = 0; i < length; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (t ^ (t >>> 14)) & 0xff;
  }
  return out;
}

/** Flips the bits of one byte of a file in place, the smallest corruption there is. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const data = await readFile(path);
  data[offset] = (data[offset] ?? 0) ^ 0xff;
  await writeFile(path, data);
}

/** Byte equality with a useful failure message (the first differing offset) instead of a megabyte diff. */
export function expectSameBytes(actual: Buffer, expected: Buffer, label = 'bytes'): void {
  expect(actual.length, `${label}: length`).toBe(expected.length);
  let first = -1;
  if (!actual.equals(expected)) first = actual.findIndex((b, i) => b !== expected[i]);
  expect(first, `${label}: first differing offset`).toBe(-1);
}

/** Where leaf `i`'s stored bytes lie in a leaf-framed blob of `rawLength` raw bytes (from the frame's header). */
export function framedLeafBytes(stored: Buffer, rawLength: number, i: number): Buffer {
  const n = Math.max(1, Math.ceil(rawLength / (16 * 1024)));
  let at = n * 40;
  for (let j = 0; j < i; j++) at += stored.readUInt32LE(n * 32 + j * 4) & 0x7fffffff;
  return stored.subarray(at, at + (stored.readUInt32LE(n * 32 + i * 4) & 0x7fffffff));
}
