import { RefugeError, isRefugeError } from '../core/errors.js';
import { BLOB_DELTA } from './blob-codec.js';
import { corruptBlob } from './blob-store.js';
import { INDEX_PREFIX, encodeIndexFile } from './index-file.js';
import { readAllIndexFiles, readIndexFiles } from './inspect.js';
import { decodeManifest } from './manifest.js';
import { packIdOfKey, packKey, parsePack, type BlobEntry, type PackInfo } from './pack.js';
import { PackRewriter, checkPackBlobs } from './pack-rewriter.js';
import { markStagedChunks } from './staging.js';
import type { ReplicaStore } from './replica-store.js';
import { collectBlobs } from './tree.js';

/**
 * Garbage collection: deletes blobs no point references, rewriting ("repacking") packs that are mostly garbage.
 * 1. Mark: every blob reachable from every point's trees is live, and every chunk a stage of changes lists. Unreferenced blobs younger than the grace period,
 *    or than the oldest upload a writer still holds (locks.ts `writer`), are kept too: they may be about to be used.
 * 2. Copy: the kept blobs of packs to rewrite go into new packs (checked while copied), with a new index file.
 *    Nothing is deleted yet, so a crash here leaves only extra copies.
 * 3. Under the exclusive lock (no commit is between its check and its manifest): mark points committed meanwhile
 *    (a pack holding a blob they revived is not deleted), write one index of everything that stays, delete the
 *    index files it replaces, then the packs. A pack is deleted only after every index file listing it, so a crash
 *    at any step leaves a store whose index only names existing packs (docs/store-format.md).
 */

export interface GcOptions {
  /** Unreferenced blobs younger than this are kept (default 1 hour). */
  graceMs?: number;
  /** A pack whose kept bytes are less than this fraction of it is rewritten (default 0.5). */
  repackBelow?: number;
  dryRun?: boolean;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface GcResult {
  points: number;
  liveBlobs: number;
  packsBefore: number;
  packsDeleted: number;
  packsWritten: number;
  bytesBefore: number;
  bytesAfter: number;
  indexFilesBefore: number;
  indexFilesAfter: number;
  /** Packs no good index file named, kept and now indexed. */
  adoptedPacks: number;
  /** Stages of changes untouched for a week (staging.ts): deleted, unless a dry run. */
  abandonedStages: number;
  damaged: { object: string; problem: string }[];
}

const INDEX_FILE_BLOBS = 100_000;

class Marker {
  readonly live = new Set<string>();
  readonly seenNodes = new Set<string>();
  readonly seenPoints = new Set<string>();
  /** Stages of changes (staging.ts) left untouched so long that their agent gave up on them. */
  abandonedStages = 0;
  constructor(
    private readonly store: ReplicaStore,
    private readonly dropAbandoned: boolean,
  ) {}

  /** Marks the chunks listed by stages of changes not committed yet, which may be hours old (a large disk's seed). */
  async markStaged(): Promise<void> {
    this.abandonedStages = await markStagedChunks(this.store.backend, this.store.key, { now: Date.now(), dropAbandoned: this.dropAbandoned }, (h) => this.live.add(h));
  }

  /** Marks the blobs of points not marked before; returns how many points are known. */
  async markNewPoints(): Promise<number> {
    for (const key of await this.store.backend.list('points/')) {
      if (this.seenPoints.has(key) || !key.endsWith('.json')) continue;
      let manifest;
      try {
        manifest = decodeManifest(await this.store.backend.get(key), key, this.store.key);
      } catch (err) {
        if (isRefugeError(err, 'not_found')) continue; // pruned meanwhile
        throw RefugeError.wrap(err, `garbage collection cannot read ${key}, so cannot tell what it references; nothing was deleted`);
      }
      this.seenPoints.add(key);
      for (const d of manifest.disks) {
        await collectBlobs(d.root, this.store.blobs, this.seenNodes, (h) => this.live.add(h), (h) => this.live.add(h));
      }
    }
    return this.seenPoints.size;
  }
}

/**
 * A kept delta blob keeps its chain (delta-frame.ts): marks live the bases of every live blob and of every blob of
 * the packs `kept` keeps whatever they hold, and theirs in turn. Bases come from the packs' entries (the index).
 */
function markBases(live: Set<string>, packs: Iterable<PackInfo>, kept: (p: PackInfo) => boolean): void {
  const baseOf = new Map<string, string>();
  const seeds: string[] = [];
  for (const p of packs) {
    for (const b of p.blobs) {
      if (b.base !== undefined) baseOf.set(b.hash, b.base);
      if (kept(p)) seeds.push(b.hash);
    }
  }
  if (baseOf.size === 0) return;
  for (const start of [...live, ...seeds]) {
    for (let h = baseOf.get(start); h !== undefined && !live.has(h); h = baseOf.get(h)) live.add(h);
  }
}

export async function collectGarbage(store: ReplicaStore, o: GcOptions = {}): Promise<GcResult> {
  const gcLock = await store.locks.acquire('gc', 'garbage collection');
  try {
    return await collect(store, o);
  } finally {
    await gcLock.release();
    await store.blobs.refresh();
  }
}

async function collect(store: ReplicaStore, o: GcOptions): Promise<GcResult> {
  const started = Date.now();
  await store.blobs.refresh();
  const { files: indexFiles, damaged: damagedIndexFiles } = await readIndexFiles(store);
  const marker = new Marker(store, !o.dryRun);
  await marker.markNewPoints();
  await marker.markStaged();
  const writerSince = await store.locks.oldestWriterProtection();
  const protectAfter = Math.min(started - (o.graceMs ?? 3600_000), writerSince ?? Infinity);

  // Where each blob's one kept copy is (its first place in the index), and which packs hold anything worth keeping.
  const packs = new Map<string, PackInfo>();
  for (const f of indexFiles) for (const p of f.packs) if (!packs.has(p.id)) packs.set(p.id, p);
  const home = new Map<string, string>();
  // A whole copy is kept rather than a delta of the same chunk (one sent again after a repair lost the delta's base).
  const homeIsDelta = new Set<string>();
  const place = (b: BlobEntry, id: string): void => {
    if (home.has(b.hash) && !(homeIsDelta.has(b.hash) && !(b.flags & BLOB_DELTA))) return;
    home.set(b.hash, id);
    if (b.flags & BLOB_DELTA) homeIsDelta.add(b.hash);
    else homeIsDelta.delete(b.hash);
  };
  for (const p of packs.values()) for (const b of p.blobs) place(b, p.id);
  const keeps = (p: PackInfo, hash: string): boolean => home.get(hash) === p.id && (marker.live.has(hash) || p.createdAt >= protectAfter);

  // Packs no index names (left by a crash before their index file was written, or named only by a damaged index
  // file) are adopted from their own headers: what they hold is judged like any other pack's blobs below. A pack
  // whose header cannot be read is left alone: verify names it.
  const orphans: string[] = [];
  for (const key of await store.backend.list('packs/')) {
    const id = packIdOfKey(key);
    if (packs.has(id)) continue;
    try {
      const info = parsePack(await store.backend.get(key), id, store.key);
      packs.set(id, info);
      for (const b of info.blobs) place(b, id);
      orphans.push(id);
    } catch (err) {
      if (!isRefugeError(err, 'integrity') && !isRefugeError(err, 'not_found')) throw err;
    }
  }

  markBases(marker.live, packs.values(), (p) => p.createdAt >= protectAfter);
  const toDelete = new Set<string>();
  const toRepack: PackInfo[] = [];
  for (const p of packs.values()) {
    const kept = p.blobs.filter((b) => keeps(p, b.hash)).reduce((n, b) => n + b.length, 0);
    if (kept === 0) toDelete.add(p.id);
    else if (kept < p.size * (o.repackBelow ?? 0.5)) toRepack.push(p);
  }
  const result: GcResult = {
    points: marker.seenPoints.size,
    liveBlobs: marker.live.size,
    packsBefore: packs.size,
    packsDeleted: 0,
    packsWritten: 0,
    bytesBefore: [...packs.values()].reduce((n, p) => n + p.size, 0),
    bytesAfter: 0,
    indexFilesBefore: indexFiles.length,
    indexFilesAfter: indexFiles.length,
    adoptedPacks: 0,
    abandonedStages: marker.abandonedStages,
    damaged: [],
  };
  if (o.dryRun) {
    result.packsDeleted = toDelete.size + toRepack.length;
    return result;
  }

  // Copy what the rewritten packs keep. A damaged blob is not copied, and its pack is not deleted: verify names it.
  const copied = new Set<string>();
  const damagedPacks = new Set<string>();
  const rewriter = new PackRewriter(store);
  const written = rewriter.written;
  let done = 0;
  for (const p of toRepack) {
    const kept = p.blobs.filter((b) => keeps(p, b.hash));
    let data: Buffer;
    try {
      data = await store.backend.get(packKey(p.id));
    } catch (err) {
      if (!isRefugeError(err, 'not_found')) throw err;
      result.damaged.push({ object: packKey(p.id), problem: `pack ${packKey(p.id)} is missing` });
      damagedPacks.add(p.id);
      continue;
    }
    // Check every kept blob (on the worker threads) before copying its stored bytes as they are (no recompression).
    const problems = await checkPackBlobs(store, data, kept);
    for (const [i, b] of kept.entries()) {
      const problem = problems[i];
      if (problem !== undefined) {
        result.damaged.push({ object: packKey(p.id), problem: corruptBlob(p.id, b.hash, problem).message });
        damagedPacks.add(p.id);
        continue;
      }
      await rewriter.copy(b, data);
      copied.add(b.hash);
    }
    o.onProgress?.('repack', ++done, toRepack.length);
  }
  await rewriter.flush();
  let interim: string | undefined;
  if (written.length > 0) {
    const { name, data } = encodeIndexFile(written, store.key);
    await store.backend.put(name, data);
    interim = name;
  }
  for (const p of toRepack) if (!damagedPacks.has(p.id)) toDelete.add(p.id);

  const exclusive = await store.locks.acquire('exclusive', 'garbage collection: deleting unreferenced packs');
  try {
    await store.blobs.refresh();
    await marker.markNewPoints();
    await marker.markStaged(); // stages written meanwhile
    // Index files written since the start (new uploads, commits): their packs stay, whatever they hold.
    const known = new Set([...indexFiles.map((f) => f.name), ...damagedIndexFiles]); // damaged ones are replaced too
    if (interim) known.add(interim);
    const added = (await readAllIndexFiles(store)).filter((f) => !known.has(f.name));
    const stay = new Map<string, PackInfo>();
    for (const f of added) for (const p of f.packs) stay.set(p.id, p);
    // Deltas of points committed meanwhile, and in packs written meanwhile (kept whatever they hold), keep their chains.
    markBases(marker.live, [...packs.values(), ...stay.values()], (p) => stay.has(p.id));
    // A blob revived by a point committed meanwhile keeps its pack unless a copy of it was made.
    for (const p of packs.values()) {
      if (!toDelete.has(p.id)) continue;
      if (stay.has(p.id) || p.blobs.some((b) => marker.live.has(b.hash) && !copied.has(b.hash) && home.get(b.hash) === p.id)) toDelete.delete(p.id);
    }
    const keptPacks = new Map<string, PackInfo>();
    for (const p of [...packs.values(), ...stay.values(), ...written]) if (!toDelete.has(p.id) && !keptPacks.has(p.id)) keptPacks.set(p.id, p);
    const finalPacks = [...keptPacks.values()];
    const newNames: string[] = [];
    for (let from = 0; from < finalPacks.length; ) {
      let to = from;
      let blobs = 0;
      while (to < finalPacks.length && (to === from || blobs + (finalPacks[to] as PackInfo).blobs.length <= INDEX_FILE_BLOBS)) blobs += (finalPacks[to++] as PackInfo).blobs.length;
      const { name, data } = encodeIndexFile(finalPacks.slice(from, to), store.key);
      await store.backend.put(name, data);
      newNames.push(name);
      from = to;
    }
    const replaced = [...known, ...added.map((f) => f.name)].filter((n) => !newNames.includes(n));
    for (const name of replaced) await store.backend.delete(name);
    for (const id of toDelete) await store.backend.delete(packKey(id));
    result.packsDeleted = toDelete.size;
    result.adoptedPacks = orphans.filter((id) => !toDelete.has(id)).length;
    result.packsWritten = written.length;
    result.bytesAfter = finalPacks.reduce((n, p) => n + p.size, 0);
    result.indexFilesAfter = (await store.backend.list(INDEX_PREFIX)).length;
    result.points = marker.seenPoints.size;
    result.liveBlobs = marker.live.size;
  } finally {
    await exclusive.release();
  }
  return result;
}

