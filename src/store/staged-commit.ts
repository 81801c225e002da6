import { RefugeError } from '../core/errors.js';
import type { StoreBackend } from './backend.js';
import type { BlobStore } from './blob-store.js';
import { chunkCount, chunkLength } from './chunks.js';
import type { DiskManifest, PointManifest } from './manifest.js';
import type { DiskChanges } from './replica-store.js';
import type { DataKey } from './sealing.js';
import { readStagedPart, stagedPartKeys } from './staging.js';
import { ZERO_HASH, updateTree } from './tree.js';

/** What a staged commit uses of the store (ReplicaStore). */
export interface StagedCommitHost {
  backend: StoreBackend;
  key: DataKey;
  blobs: BlobStore;
  /** Indexes in range, hashes well formed, chunks stored and the length of their place; else throws. */
  checkChanges(change: DiskChanges, chunkSize: number): Promise<void>;
  /** A disk's manifest from its parent's and one whole list of changes (ReplicaStore's unstaged commit). */
  applyChanges(base: DiskManifest | undefined, change: DiskChanges, chunkSize: number): Promise<Required<DiskManifest>>;
}

interface DiskBuild {
  change: DiskChanges;
  base: DiskManifest | undefined;
  count: number;
  /** Built part by part; otherwise the parts are gathered in `gathered` and applied as one list. */
  partByPart: boolean;
  gathered: [number, string | null][];
  root: string;
  storedChunks: number;
  storedBytes: number;
  changedChunks: number;
  changedBytes: number;
}

/**
 * The disks of a point committed from a stage of changes (staging.ts) plus the commit's own changes, which come
 * last. A disk that has no parent disk (a first point: the case staging exists for) or one of the same size and
 * chunk size is built part by part, each part checked and applied to the tree the one before left, so only one part
 * is in memory at a time; the nodes of the trees in between are garbage the next collection removes. A disk resized
 * or given a new chunk size since its parent needs the rules of a whole list (a chunk whose place changed length must
 * be listed; a new chunk size lists every chunk), so its parts are gathered into one list: rare, and no costlier than
 * an unstaged commit of that list. Counts of changed chunks assume each index is listed once (as the agent does).
 */
export async function applyStagedChanges(
  host: StagedCommitHost,
  req: { replicationId: string; stageId: string; disks: DiskChanges[] },
  parent: PointManifest | null,
  chunkSize: number,
): Promise<Required<DiskManifest>[]> {
  const keys = await stagedPartKeys(host.backend, req.replicationId, req.stageId);
  const builds = new Map<string, DiskBuild>();
  for (const change of req.disks) {
    const base = parent?.disks.find((x) => x.name === change.name);
    const partByPart = !base || (base.sizeBytes === change.sizeBytes && base.chunkSize === chunkSize);
    const from = partByPart ? base : undefined;
    builds.set(change.name, {
      change, base, count: chunkCount(change.sizeBytes, chunkSize), partByPart, gathered: [],
      root: from?.root ?? ZERO_HASH, storedChunks: from?.storedChunks ?? 0, storedBytes: from?.storedBytes ?? 0, changedChunks: 0, changedBytes: 0,
    });
  }
  const apply = async (b: DiskBuild, changes: [number, string | null][]): Promise<void> => {
    if (changes.length === 0) return;
    if (!b.partByPart) {
      for (const c of changes) b.gathered.push(c);
      return;
    }
    const { name, sizeBytes } = b.change;
    await host.checkChanges({ name, sizeBytes, changes }, chunkSize);
    const r = await updateTree(b.root, b.count, changes, host.blobs, host.blobs);
    for (const [i, h] of new Map(changes)) {
      const before = r.previous.get(i) ?? null;
      if (before === h) continue;
      const length = chunkLength(sizeBytes, chunkSize, i);
      const stored = (h !== null ? 1 : 0) - (before !== null ? 1 : 0);
      b.storedChunks += stored;
      b.storedBytes += stored * length;
      b.changedChunks++;
      b.changedBytes += length;
    }
    b.root = r.root;
  };
  for (const key of keys) {
    for (const d of (await readStagedPart(host.backend, host.key, key)).disks) {
      const b = builds.get(d.name);
      if (!b) throw new RefugeError('invalid_argument', `staged changes (${key}) name disk '${d.name}', which the commit does not list`);
      await apply(b, d.changes);
    }
  }
  const disks: Required<DiskManifest>[] = [];
  for (const b of builds.values()) {
    await apply(b, b.change.changes);
    if (b.partByPart) {
      const { root, storedChunks, storedBytes, changedChunks, changedBytes } = b;
      disks.push({ name: b.change.name, sizeBytes: b.change.sizeBytes, chunkSize, root, storedChunks, storedBytes, changedChunks, changedBytes });
    } else {
      const whole = { name: b.change.name, sizeBytes: b.change.sizeBytes, changes: b.gathered };
      await host.checkChanges(whole, chunkSize);
      disks.push(await host.applyChanges(b.base, whole, chunkSize));
    }
  }
  return disks;
}
