import { INDEX_PREFIX, decodeIndexFile } from './index-file.js';
import type { BlobType, PackInfo } from './pack.js';
import type { ReplicaStore } from './replica-store.js';

/** Read-only views of a store for stats, verify and tests: what the index files on the backend say right now. */

export async function readAllIndexFiles(store: ReplicaStore): Promise<{ name: string; packs: PackInfo[] }[]> {
  const out = [];
  for (const name of await store.backend.list(INDEX_PREFIX)) {
    out.push({ name, packs: decodeIndexFile(await store.backend.get(name), name, store.key) });
  }
  return out;
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
