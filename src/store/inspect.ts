import { isRefugeError } from '../core/errors.js';
import { INDEX_PREFIX, decodeIndexFile } from './index-file.js';
import type { BlobType, PackInfo } from './pack.js';
import type { ReplicaStore } from './replica-store.js';

/** Read-only views of a store for stats, verify and tests: what the index files on the backend say right now. */

/** Every index file that decodes; `damaged` names those that do not (their packs are then found by their headers). */
export async function readIndexFiles(store: ReplicaStore): Promise<{ files: { name: string; packs: PackInfo[] }[]; damaged: string[] }> {
  const files = [];
  const damaged = [];
  for (const name of await store.backend.list(INDEX_PREFIX)) {
    try {
      files.push({ name, packs: decodeIndexFile(await store.backend.get(name), name, store.key) });
    } catch (err) {
      if (isRefugeError(err, 'not_found')) continue;
      if (!isRefugeError(err, 'integrity')) throw err;
      damaged.push(name);
    }
  }
  return { files, damaged };
}

export async function readAllIndexFiles(store: ReplicaStore): Promise<{ name: string; packs: PackInfo[] }[]> {
  return (await readIndexFiles(store)).files;
}

/** Every blob the index files list (once per hash, at its first place). */
export async function listIndexedBlobs(store: ReplicaStore): Promise<{ type: BlobType; hash: string; packId: string; length: number; rawLength: number }[]> {
  const seen = new Set<string>();
  const out = [];
  for (const file of await readAllIndexFiles(store)) {
    for (const p of file.packs) {
      for (const b of p.blobs) {
        if (seen.has(b.hash)) continue;
        seen.add(b.hash);
        out.push({ type: b.type, hash: b.hash, packId: p.id, length: b.length, rawLength: b.rawLength });
      }
    }
  }
  return out;
}

export interface StoreStats {
  location: string;
  format: number;
  chunkSize: number;
  encrypted: boolean;
  replications: { id: string; points: number }[];
  packs: number;
  indexFiles: number;
  dataBlobs: number;
  treeBlobs: number;
  /** Bytes of blobs as stored (compressed, sealed) and as they were. */
  storedBytes: number;
  rawBytes: number;
  /** Non-zero bytes all points reference, counting shared chunks once per point: what full copies would take. */
  logicalBytes: number;
}

/** Sizes and counts of a store; reads index files and point manifests only. */
export async function storeStats(store: ReplicaStore): Promise<StoreStats> {
  const blobs = await listIndexedBlobs(store);
  const replications = [];
  let logicalBytes = 0;
  for (const id of await store.listReplications()) {
    const points = await store.listPointIds(id);
    replications.push({ id, points: points.length });
    for (const p of points) logicalBytes += (await store.getPoint(id, p)).stats.storedBytes;
  }
  return {
    location: store.backend.location,
    format: store.config.format,
    chunkSize: store.chunkSize,
    encrypted: store.config.encryption !== null,
    replications,
    packs: new Set(blobs.map((b) => b.packId)).size,
    indexFiles: (await store.backend.list('index/')).length,
    dataBlobs: blobs.filter((b) => b.type === 'data').length,
    treeBlobs: blobs.filter((b) => b.type === 'tree').length,
    storedBytes: blobs.reduce((n, b) => n + b.length, 0),
    rawBytes: blobs.reduce((n, b) => n + b.rawLength, 0),
    logicalBytes,
  };
}
