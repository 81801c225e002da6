import { open } from 'node:fs/promises';
import { RefugeError, isRefugeError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { forEachLimit } from '../core/concurrency.js';
import type { StoreBackend } from './backend.js';
import { DEFAULT_CHUNK_SIZE, chunkCount, chunkHash, chunkLength, isChunkHash, isZero } from './chunks.js';
import {
  decodeManifest,
  encodeManifest,
  findDisk,
  type Consistency,
  type DiskManifest,
  type PointManifest,
} from './manifest.js';

/**
 * The replica store: deduplicated chunks addressed by SHA-256 plus one manifest per recovery point.
 * Glossary: a *chunk* is a fixed-size, offset-aligned piece of a disk; a *point* is a manifest naming every
 * chunk of every disk of a machine at one instant; a point has a *parent* (the previous point of the same
 * replication) and is committed from the parent plus the chunks that changed, never as a full copy.
 * Layout and invariants: docs/store-format.md.
 */

const CONFIG_KEY = 'refuge-store.json';
const chunkKey = (hash: string) => `chunks/${hash.slice(0, 2)}/${hash}`;
const pointsPrefix = (replicationId: string) => `points/${replicationId}/`;
const pointKey = (replicationId: string, pointId: string) => `${pointsPrefix(replicationId)}${pointId}.json`;

export interface StoreConfig {
  format: 1;
  chunkSize: number;
  createdAt: string;
}

export interface DiskChanges {
  name: string;
  sizeBytes: number;
  /** Chunks that differ from the parent point: [chunk index, hash or null for zeros]. */
  changes: [number, string | null][];
}

export interface CommitRequest {
  replicationId: string;
  /** The point these changes apply to; null for the first point (every chunk is then listed as a change). */
  parentId: string | null;
  capturedAt: Date;
  consistency: Consistency;
  disks: DiskChanges[];
}

/** Reports bytes done so far out of the bytes the whole operation will handle. */
export type ProgressCallback = (doneBytes: number, totalBytes: number) => void;

const usableChunkSize = (n: number): boolean => Number.isInteger(n) && n >= 4096 && n <= 64 * 1024 * 1024 && (n & (n - 1)) === 0;

export class ReplicaStore {
  private constructor(
    readonly backend: StoreBackend,
    readonly config: StoreConfig,
  ) {}

  get chunkSize(): number {
    return this.config.chunkSize;
  }

  /** Opens the store in `backend`, creating it with `chunkSize` when `create` is set and it does not exist. */
  static async open(
    backend: StoreBackend,
    options: { create?: boolean; chunkSize?: number } = {},
  ): Promise<ReplicaStore> {
    let config: StoreConfig;
    try {
      config = JSON.parse((await backend.get(CONFIG_KEY)).toString('utf8')) as StoreConfig;
    } catch (err) {
      if (!isRefugeError(err, 'not_found') || !options.create) {
        throw RefugeError.wrap(err, `cannot open replica store at ${backend.location}`);
      }
      config = { format: 1, chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE, createdAt: new Date().toISOString() };
      if (!usableChunkSize(config.chunkSize)) {
        throw new RefugeError('invalid_argument', `chunk size ${config.chunkSize} is not usable`, { hint: 'use a power of two from 4 KiB to 64 MiB' });
      }
      await backend.put(CONFIG_KEY, Buffer.from(JSON.stringify(config, null, 2)));
    }
    if (config.format !== 1 || !usableChunkSize(config.chunkSize)) {
      throw new RefugeError('failed_precondition', `replica store at ${backend.location} has an unusable config`);
    }
    return new ReplicaStore(backend, config);
  }

  /** Of `hashes`, those the store does not hold yet (what an agent still has to upload). */
  async missingChunks(hashes: string[]): Promise<string[]> {
    const unique = [...new Set(hashes)];
    const missing: string[] = [];
    await forEachLimit(unique, 16, async (h) => {
      if (!isChunkHash(h)) throw new RefugeError('invalid_argument', `'${h}' is not a chunk hash`);
      if (!(await this.backend.exists(chunkKey(h)))) missing.push(h);
    });
    return missing;
  }

  /** Stores a chunk after checking that its bytes hash to `hash`; nothing is ever stored under a wrong name. */
  async putChunk(hash: string, data: Uint8Array): Promise<void> {
    if (data.length === 0 || data.length > this.chunkSize) {
      throw new RefugeError('invalid_argument', `chunk ${hash} has ${data.length} bytes (1..${this.chunkSize})`);
    }
    if (isZero(data)) throw new RefugeError('invalid_argument', `chunk ${hash} is all zeros; zero chunks are not stored`);
    const actual = chunkHash(data);
    if (actual !== hash) {
      throw new RefugeError('integrity', `chunk bytes hash to ${actual}, not to the claimed ${hash}; rejected`);
    }
    await this.backend.put(chunkKey(hash), data);
  }

  /** A chunk's bytes, verified against its address; a mismatch is an `integrity` error naming the object. */
  async getChunk(hash: string, context = ''): Promise<Buffer> {
    const key = chunkKey(hash);
    let data: Buffer;
    try {
      data = await this.backend.get(key);
    } catch (err) {
      if (isRefugeError(err, 'not_found')) {
        throw new RefugeError('integrity', `chunk object ${key} is missing${context}`, { details: { object: key } });
      }
      throw err;
    }
    if (chunkHash(data) !== hash) {
      throw new RefugeError('integrity', `chunk object ${key} is corrupt${context}`, {
        hint: 'run `refuge store verify` to find every damaged object; a resync repairs it from the source',
        details: { object: key },
      });
    }
    return data;
  }

  /**
   * Makes a new point visible: the parent's chunk lists with `changes` applied. Every referenced chunk must be
   * stored already. The manifest is written atomically, so the point is visible complete or not at all.
   */
  async commitPoint(req: CommitRequest): Promise<PointManifest> {
    const parent = req.parentId === null ? null : await this.getPoint(req.replicationId, req.parentId);
    const disks: DiskManifest[] = [];
    const referenced = new Set<string>();
    let changedChunks = 0;
    let changedBytes = 0;
    for (const change of req.disks) {
      const count = chunkCount(change.sizeBytes, this.chunkSize);
      const base = parent?.disks.find((d) => d.name === change.name)?.chunks ?? [];
      const chunks = Array.from({ length: count }, (_, i) => base[i] ?? null);
      for (const [index, hash] of change.changes) {
        if (!Number.isInteger(index) || index < 0 || index >= count) {
          throw new RefugeError('invalid_argument', `disk '${change.name}': chunk index ${index} is outside 0..${count - 1}`);
        }
        if (hash !== null && !isChunkHash(hash)) {
          throw new RefugeError('invalid_argument', `disk '${change.name}': '${hash}' is not a chunk hash`);
        }
        if (chunks[index] !== hash) {
          changedChunks++;
          changedBytes += chunkLength(change.sizeBytes, this.chunkSize, index);
        }
        chunks[index] = hash;
        if (hash !== null) referenced.add(hash);
      }
      disks.push({ name: change.name, sizeBytes: change.sizeBytes, chunkSize: this.chunkSize, chunks });
    }
    const missing = await this.missingChunks([...referenced]);
    if (missing.length > 0) {
      throw new RefugeError('failed_precondition', `${missing.length} chunk(s) referenced by the point are not stored`, {
        details: { missing: missing.slice(0, 20) },
        hint: 'upload the missing chunks, then commit again',
      });
    }
    const manifest: PointManifest = {
      format: 1,
      id: newId('pt', req.capturedAt),
      replicationId: req.replicationId,
      parentId: req.parentId,
      capturedAt: req.capturedAt.toISOString(),
      committedAt: new Date().toISOString(),
      consistency: req.consistency,
      disks,
      stats: {
        changedChunks,
        changedBytes,
        storedBytes: disks.reduce((n, d) => n + d.chunks.reduce((m, c, i) => (c === null ? m : m + chunkLength(d.sizeBytes, d.chunkSize, i)), 0), 0),
      },
    };
    await this.backend.put(pointKey(req.replicationId, manifest.id), encodeManifest(manifest));
    return manifest;
  }

  /** Point ids of a replication, oldest first (ids sort by capture time). */
  async listPointIds(replicationId: string): Promise<string[]> {
    const prefix = pointsPrefix(replicationId);
    return (await this.backend.list(prefix)).map((k) => k.slice(prefix.length, -'.json'.length));
  }

  async getPoint(replicationId: string, pointId: string): Promise<PointManifest> {
    const key = pointKey(replicationId, pointId);
    return decodeManifest(await this.backend.get(key), key);
  }

  async deletePoint(replicationId: string, pointId: string): Promise<void> {
    await this.backend.delete(pointKey(replicationId, pointId));
  }

  /** Bytes [offset, offset+length) of a disk at a point; zero chunks read as zeros, every chunk is verified. */
  async readRange(point: PointManifest, diskName: string, offset: number, length: number): Promise<Buffer> {
    const disk = findDisk(point, diskName);
    if (offset < 0 || length < 0 || offset + length > disk.sizeBytes) {
      throw new RefugeError('invalid_argument', `range ${offset}+${length} is outside disk '${diskName}' (${disk.sizeBytes} bytes)`);
    }
    const out = Buffer.alloc(length);
    const first = Math.floor(offset / disk.chunkSize);
    const last = Math.floor((offset + length - 1) / disk.chunkSize);
    for (let i = first; length > 0 && i <= last; i++) {
      const hash = disk.chunks[i];
      if (!hash) continue;
      const data = await this.getChunk(hash, ` (point ${point.id}, disk ${diskName}, chunk ${i})`);
      const chunkStart = i * disk.chunkSize;
      const from = Math.max(offset, chunkStart);
      const to = Math.min(offset + length, chunkStart + data.length);
      data.copy(out, from - offset, from - chunkStart, to - chunkStart);
    }
    return out;
  }

  /**
   * Writes a disk of a point to a sparse raw image at `path` (zero chunks are holes), checking every chunk's hash.
   * Reads run several at a time so the backend, hashing and writes overlap.
   */
  async materialize(
    point: PointManifest,
    diskName: string,
    path: string,
    options: { onProgress?: ProgressCallback; signal?: AbortSignal; concurrency?: number } = {},
  ): Promise<{ sizeBytes: number; writtenBytes: number }> {
    const disk = findDisk(point, diskName);
    const file = await open(path, 'w', 0o640);
    let written = 0;
    try {
      await file.truncate(disk.sizeBytes);
      const indexes = disk.chunks.flatMap((h, i) => (h ? [i] : []));
      const total = indexes.reduce((n, i) => n + chunkLength(disk.sizeBytes, disk.chunkSize, i), 0);
      await forEachLimit(indexes, options.concurrency ?? 4, async (i) => {
        options.signal?.throwIfAborted();
        const hash = disk.chunks[i] as string;
        const data = await this.getChunk(hash, ` (point ${point.id}, disk ${diskName}, chunk ${i})`);
        const expected = chunkLength(disk.sizeBytes, disk.chunkSize, i);
        if (data.length !== expected) {
          throw new RefugeError('integrity', `chunk ${hash} has ${data.length} bytes where disk '${diskName}' needs ${expected}`);
        }
        await file.write(data, 0, data.length, i * disk.chunkSize);
        written += data.length;
        options.onProgress?.(written, total);
      });
      await file.sync();
    } catch (err) {
      throw RefugeError.wrap(err, `restoring disk '${diskName}' of point ${point.id} to ${path}`);
    } finally {
      await file.close();
    }
    return { sizeBytes: disk.sizeBytes, writtenBytes: written };
  }

  /** Reads and hash-checks every chunk a point references; returns the problems found (empty when sound). */
  async verifyPoint(point: PointManifest): Promise<{ object: string; problem: string }[]> {
    const problems: { object: string; problem: string }[] = [];
    const hashes = new Set(point.disks.flatMap((d) => d.chunks.filter((c): c is string => c !== null)));
    await forEachLimit(hashes, 4, async (hash) => {
      try {
        await this.getChunk(hash);
      } catch (err) {
        if (!isRefugeError(err, 'integrity')) throw err;
        problems.push({ object: typeof err.details.object === 'string' ? err.details.object : chunkKey(hash), problem: err.message });
      }
    });
    return problems;
  }
}
