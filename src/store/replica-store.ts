import { RefugeError, isRefugeError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { forEachLimit } from '../core/concurrency.js';
import type { StoreBackend } from './backend.js';
import { BlobStore } from './blob-store.js';
import { DEFAULT_CHUNK_SIZE, blobName, chunkCount, chunkLength, isChunkHash, isZero, type BlobNaming } from './chunks.js';
import { StoreLocks, type HeldLock, type LockOptions } from './locks.js';
import { decodeManifest, encodeManifest, findDisk, pointKey, pointsPrefix, type Consistency, type DiskManifest, type PointManifest } from './manifest.js';
import { materializeDisk, type MaterializeOptions } from './restore.js';
import { newEncryption, openDataKey, type DataKey } from './sealing.js';
import { CONFIG_KEY, DEFAULT_COMPRESSION_LEVEL, DEFAULT_PACK_SIZE, MAX_CHUNK_SIZE, STORE_FORMAT, checkConfig, hasDeltas, namingOf, usableChunkSize, type StoreConfig, type StoreFormat } from './store-config.js';
import { ZERO_HASH, collectBlobs, diffTrees, forEachChunk, listChunks, updateTree } from './tree.js';
import { verifyPointBlobs } from './verify.js';
import { applyStagedChanges, type StagedCommitHost } from './staged-commit.js';
import { dropStage, writeStagedPart, type StagedDisk } from './staging.js';
import { BLOB_DELTA } from './blob-codec.js';
import { baseLacking, mismatch, rebuildPatches, type PatchOutcome, type PatchUpload } from './patched-chunks.js';
import { workerPool, type RebuildBase } from './worker-pool.js';

/**
 * The replica store: recovery points of disks, deduplicated, compressed and optionally encrypted.
 * Glossary: a *chunk* is a fixed-size, offset-aligned piece of a disk, named by its SHA-256; a *blob* is a stored
 * chunk or hash-tree node, kept in *packs* found through the *index* (blob-store.ts); a *point* is a manifest
 * naming, per disk, the root of a hash tree over its chunks (tree.ts); a point has a *parent* (the previous point
 * of the same replication) and is committed from the parent plus the chunks that changed, never as a full copy.
 * Layout and invariants: docs/store-format.md.
 */

export type { StoreConfig } from './store-config.js';

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
  /**
   * Chunk size of the point's disks; default: the store's. A replication's policy may choose its own (small chunks
   * for disks with small random writes, large for big sequential ones): each disk manifest records its chunk size,
   * and a disk whose chunk size differs from its parent's is built anew (every chunk listed).
   */
  chunkSize?: number;
  /** A stage of changes sent before (staging.ts, ReplicaStore.stageChanges): its parts apply first, then `disks`'. */
  stageId?: string;
}

/** Reports bytes done so far out of the bytes the whole operation will handle. */
export type ProgressCallback = (doneBytes: number, totalBytes: number) => void;

export interface OpenOptions {
  create?: boolean;
  /** For a new store: chunk size, pack size, zstd level (0: no compression). */
  chunkSize?: number;
  packSize?: number;
  compressionLevel?: number;
  /** For a new store: its format (store-config.ts; default 2). */
  format?: StoreFormat;
  /** The vault key: needed to open an encrypted store; with `create` and `encrypt`, the new store is encrypted. */
  vaultKey?: Buffer;
  encrypt?: boolean;
  locks?: LockOptions;
}

/** Uploads older than this no longer hold back garbage collection (an agent that never committed them is gone). */
const UPLOAD_PROTECTION_MS = 6 * 3600_000;

export class ReplicaStore {
  readonly blobs: BlobStore;
  readonly locks: StoreLocks;
  /**
   * Chunks uploaded and not yet referenced by a committed point, with when they arrived, oldest first (an upload
   * arriving again moves to the end: `noteUpload`), so the oldest is the first and expired ones leave from the front.
   */
  private readonly uploads = new Map<string, number>();
  private writerNotice: Promise<HeldLock> | undefined;
  /** How this store names chunks and tree nodes (its format): what agents must hash with. */
  readonly naming: BlobNaming;
  /** Whether patched chunks are stored as deltas on their bases (a plain store of format 4, delta-frame.ts). */
  readonly deltas: boolean;

  private constructor(
    readonly backend: StoreBackend,
    readonly config: StoreConfig,
    readonly key: DataKey,
    lockOptions: LockOptions | undefined,
  ) {
    this.naming = namingOf(config.format);
    this.deltas = hasDeltas(config.format) && key === null;
    this.blobs = new BlobStore({ backend, key, compressionLevel: config.compressionLevel, packSize: config.packSize, naming: this.naming, deltas: this.deltas });
    this.locks = new StoreLocks(backend, lockOptions);
  }

  get chunkSize(): number {
    return this.config.chunkSize;
  }

  /** Opens the store in `backend`, creating it when `create` is set and it does not exist. */
  static async open(backend: StoreBackend, options: OpenOptions = {}): Promise<ReplicaStore> {
    let config: StoreConfig;
    let key: DataKey;
    try {
      config = checkConfig(JSON.parse((await backend.get(CONFIG_KEY)).toString('utf8')) as StoreConfig, backend.location);
      key = openDataKey(config.encryption, options.vaultKey, backend.location);
    } catch (err) {
      if (!isRefugeError(err, 'not_found') || !options.create) throw RefugeError.wrap(err, `cannot open replica store at ${backend.location}`);
      ({ config, key } = ReplicaStore.newConfig(options));
      await backend.put(CONFIG_KEY, Buffer.from(JSON.stringify(config, null, 2)));
    }
    const store = new ReplicaStore(backend, config, key, options.locks);
    await store.blobs.load();
    return store;
  }

  private static newConfig(o: OpenOptions): { config: StoreConfig; key: DataKey } {
    const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!usableChunkSize(chunkSize)) {
      throw new RefugeError('invalid_argument', `chunk size ${chunkSize} is not usable`, { hint: 'use a power of two from 4 KiB to 64 MiB' });
    }
    if (o.encrypt && !o.vaultKey) throw new RefugeError('invalid_argument', 'an encrypted store needs a vault key');
    const enc = o.encrypt && o.vaultKey ? newEncryption(o.vaultKey) : null;
    const config: StoreConfig = {
      format: o.format ?? STORE_FORMAT,
      chunkSize,
      packSize: o.packSize ?? DEFAULT_PACK_SIZE,
      compressionLevel: o.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL,
      createdAt: new Date().toISOString(),
      encryption: enc?.config ?? null,
    };
    checkConfig(config, '(new store)');
    return { config, key: enc?.dataKey ?? null };
  }

  /** Stops background work (lock refreshes, pending uploads' notice). Unwritten uploads are dropped. */
  async close(): Promise<void> {
    const notice = this.writerNotice;
    this.writerNotice = undefined;
    if (notice) await (await notice).release().catch(() => undefined);
  }

  /** Of `hashes`, those the store does not hold yet (what an agent still has to upload). */
  async missingChunks(hashes: string[]): Promise<string[]> {
    const unique = [...new Set(hashes)];
    for (const h of unique) if (!isChunkHash(h)) throw new RefugeError('invalid_argument', `'${h}' is not a chunk hash`);
    return unique.filter((h) => !this.blobs.has(h));
  }

  /**
   * Stores a chunk after checking that its bytes hash to `hash`; nothing is ever stored under a wrong name. Its
   * length may be anything up to MAX_CHUNK_SIZE (replications choose their chunk size); a commit checks that each
   * chunk fills its place exactly. With `give`, `data`'s memory moves to the worker that hashes and compresses it
   * (no copy): the caller must not use it again.
   */
  async putChunk(hash: string, data: Uint8Array, o: { give?: boolean } = {}): Promise<void> {
    await this.putChunks([{ hash, data }], o);
  }

  /**
   * Stores several chunks as `putChunk` would each, in one task for a worker thread: for small chunks (a policy's
   * 16 KiB, say) the round trip to a worker, not the hashing, was the cost of a chunk. A chunk whose bytes do not
   * match its hash fails the call, after the others are stored (uploads are idempotent: the sender retries).
   * With `give`, the memory of a lone chunk's `data` moves to the worker (no copy): the caller must not use it again.
   */
  async putChunks(items: readonly { hash: string; data: Uint8Array }[], o: { give?: boolean } = {}): Promise<void> {
    const fresh: { hash: string; data: Uint8Array }[] = [];
    const wanted = new Set<string>();
    for (const { hash, data } of items) {
      if (data.length === 0 || data.length > MAX_CHUNK_SIZE) throw new RefugeError('invalid_argument', `chunk ${hash} has ${data.length} bytes (1..${MAX_CHUNK_SIZE})`);
      if (isZero(data)) throw new RefugeError('invalid_argument', `chunk ${hash} is all zeros; zero chunks are not stored`);
      if (!isChunkHash(hash)) throw new RefugeError('invalid_argument', `'${hash}' is not a chunk hash`);
      if (this.blobs.has(hash) || wanted.has(hash)) {
        const actual = blobName(data, this.naming);
        if (actual !== hash) throw mismatch(hash, actual);
        continue;
      }
      wanted.add(hash);
      fresh.push({ hash, data });
    }
    if (fresh.length === 0) return;
    const lone = fresh.length === 1 ? (fresh[0] as { data: Uint8Array }).data : undefined;
    const all = lone ?? Buffer.allocUnsafe(fresh.reduce((n, f) => n + f.data.length, 0));
    let at = 0;
    const tasks = fresh.map(({ hash, data }) => {
      if (!lone) all.set(data, at);
      at += data.length;
      return { offset: at - data.length, length: data.length, claimedHash: hash };
    });
    const reply = await workerPool().run({ op: 'encode', key: this.key, naming: this.naming, level: this.config.compressionLevel, data: all, items: tasks }, lone ? o.give === true : true);
    const stored = Buffer.from(reply.stored);
    let bad: RefugeError | undefined;
    let from = 0;
    for (const [n, item] of reply.items.entries()) {
      const hash = (fresh[n] as { hash: string }).hash;
      if ('problem' in item) {
        bad ??= mismatch(hash, item.hash);
        continue;
      }
      this.noteUpload(hash);
      this.blobs.addNow('data', hash, { stored: stored.subarray(from, from + item.storedLength), flags: item.flags, rawLength: item.rawLength });
      from += item.storedLength;
    }
    await this.noticeUploads();
    await this.blobs.settle();
    if (bad) throw bad;
  }

  /**
   * Stores the chunk a patch rebuilds from the stored chunk `base` (null: a chunk of zeros), after checking it
   * hashes to `hash`; returns its length. A base the store lacks, or cannot read back intact, is a
   * `failed_precondition` (the sender then sends the whole chunk). See putPatchedChunks.
   */
  async putPatchedChunk(hash: string, base: string | null, patch: Uint8Array, chunkLength: number): Promise<number> {
    const [outcome] = await this.putPatchedChunks([{ hash, base, patch, chunkLength }]);
    if (!outcome) throw new RefugeError('internal', 'no outcome for a patched chunk');
    if ('error' in outcome) throw outcome.error;
    return outcome.rawLength;
  }

  /**
   * Stores the chunks patches rebuild, as putPatchedChunk would each, in as few worker tasks as it can
   * (patched-chunks.ts: reading the bases, patching, hashing and compressing run on worker threads); one outcome
   * per upload, in order: its length, or the error putPatchedChunk would throw. The patches' bytes are copied.
   */
  async putPatchedChunks(uploads: readonly PatchUpload[]): Promise<PatchOutcome[]> {
    const outcomes = await rebuildPatches({ blobs: this.blobs, key: this.key, naming: this.naming, level: this.config.compressionLevel, deltas: this.deltas, noteUpload: (h) => this.noteUpload(h) }, uploads, (b) => this.readBase(b));
    await this.noticeUploads();
    await this.blobs.settle();
    return outcomes;
  }

  /** A patch base's stored bytes, read on this thread (from a pack being built, or any backend). */
  private async readBase(base: string): Promise<RebuildBase> {
    const { stored, loc } = await this.blobs.readStored(base).catch((err: unknown) => {
      if (isRefugeError(err, 'not_found')) throw baseLacking(base);
      throw new RefugeError('failed_precondition', `patch base chunk ${base} cannot be read: ${(err as Error).message}`, { cause: err, hint: 'upload the whole chunk instead', details: { patchBase: base } });
    });
    // A delta goes to the worker decoded (its chain read and checked here): it is the rare case of a base not in a
    // local pack file, and the chunk patched on it is then stored framed, whole, starting a new chain.
    if (loc.flags & BLOB_DELTA) return { data: await this.blobs.read(base), flags: 0, rawLength: loc.rawLength, hash: base };
    // Its own memory, so it moves to the worker (a pending base is a view into its pack being built).
    const owned = stored.byteOffset === 0 && stored.byteLength === stored.buffer.byteLength ? stored : Buffer.from(stored);
    return { data: owned, flags: loc.flags, rawLength: loc.rawLength, hash: base };
  }

  private noteUpload(hash: string): void {
    this.uploads.delete(hash);
    this.uploads.set(hash, Date.now());
  }

  /**
   * Keeps the `writer` notice (locks.ts) in step with the uploads no point references yet. Called per upload: it
   * looks at the oldest uploads only (a scan of all of them made a seed of n chunks cost n^2/2 steps).
   */
  private async noticeUploads(): Promise<void> {
    const cutoff = Date.now() - UPLOAD_PROTECTION_MS;
    let oldest = Infinity;
    for (const [h, t] of this.uploads) {
      if (t >= cutoff) {
        oldest = t;
        break;
      }
      this.uploads.delete(h);
    }
    if (this.uploads.size === 0) {
      const notice = this.writerNotice;
      this.writerNotice = undefined;
      if (notice) await (await notice).release();
      return;
    }
    if (!this.writerNotice) {
      this.writerNotice = this.locks.acquire('writer', 'uploads awaiting a commit');
      this.writerNotice.catch(() => (this.writerNotice = undefined));
      await (await this.writerNotice).refresh(oldest);
    } else {
      // Move the notice forward as old uploads get committed, so garbage collection is not held back for ever.
      const notice = await this.writerNotice;
      if (oldest > (notice.record.protectSince ?? 0) + 60_000) await notice.refresh(oldest);
    }
  }

  /** A chunk's bytes, verified against its address; damage is an `integrity` error naming the object. */
  async getChunk(hash: string, context = ''): Promise<Buffer> {
    return this.blobs.read(hash, context);
  }

  /**
   * Makes a new point visible: the parent's disks with `changes` applied. Every referenced chunk must be stored
   * already. Only the tree nodes on paths to changed chunks are written; the manifest is written last, under a
   * shared lock, after checking no garbage collection removed what it references: visible complete or not at all.
   */
  async commitPoint(req: CommitRequest): Promise<PointManifest> {
    await this.flushOrDiscard(req.replicationId); // a failed pack write (a full disk) is the error, not "missing chunks"
    const cs = req.chunkSize ?? this.chunkSize;
    if (!usableChunkSize(cs)) throw new RefugeError('invalid_argument', `chunk size ${cs} is not usable`, { hint: 'use a power of two from 4 KiB to 64 MiB' });
    const parent = req.parentId === null ? null : await this.getPoint(req.replicationId, req.parentId);
    const names = new Set<string>();
    for (const change of req.disks) {
      // Two disks of one name would make a manifest whose second disk no reader can reach.
      if (names.has(change.name)) throw new RefugeError('invalid_argument', `disk '${change.name}' is listed twice`);
      names.add(change.name);
      if (!Number.isSafeInteger(change.sizeBytes) || change.sizeBytes < 0) throw new RefugeError('invalid_argument', `disk '${change.name}': size ${change.sizeBytes} is not usable`);
    }
    const referenced = new Set<string>();
    let disks: Required<DiskManifest>[];
    if (req.stageId === undefined) {
      const listed = req.disks.map((change) => checkIndexes(change, cs)); // a malformed request is 400 before chunks are looked for
      for (const [n, change] of req.disks.entries()) for (const h of await this.checkChanges(change, cs, listed[n])) referenced.add(h);
      disks = [];
      for (const change of req.disks) disks.push(await this.applyChanges(parent?.disks.find((x) => x.name === change.name), change, cs));
    } else {
      disks = await applyStagedChanges(this.stagedCommitHost(), { ...req, stageId: req.stageId }, parent, cs);
    }
    let changedChunks = 0;
    let changedBytes = 0;
    for (const disk of disks) {
      changedChunks += disk.changedChunks;
      changedBytes += disk.changedBytes;
    }
    const manifest: PointManifest = {
      format: 2,
      id: newId('pt', req.capturedAt),
      replicationId: req.replicationId,
      parentId: req.parentId,
      capturedAt: req.capturedAt.toISOString(),
      committedAt: new Date().toISOString(),
      consistency: req.consistency,
      disks,
      stats: { changedChunks, changedBytes, storedBytes: disks.reduce((n, d) => n + d.storedBytes, 0) },
    };
    await this.flushOrDiscard(req.replicationId, { index: true });
    const lock = await this.locks.acquire('shared', `commit of a point of ${req.replicationId}`);
    try {
      if ((await this.blobs.refresh()).rebuilt) await this.checkStillStored(manifest);
      await this.backend.put(pointKey(req.replicationId, manifest.id), encodeManifest(manifest, this.key));
    } finally {
      await lock.release();
    }
    for (const h of referenced) this.uploads.delete(h);
    if (req.stageId !== undefined) await dropStage(this.backend, req.replicationId, req.stageId).catch(() => undefined); // else abandoned: GC drops it
    await this.noticeUploads().catch(() => undefined);
    return manifest;
  }

  /**
   * Checks one disk's changes before they are applied: indexes in range, hashes well formed, every chunk stored and
   * exactly the length of its place (restores refuse anything else, so the point could never be restored). An index
   * listed twice takes its last listing (as the tree is updated): only that one must fit. Returns the chunk hashes
   * (`referenced`: checkIndexes's answer, when the caller checked the indexes already).
   */
  private async checkChanges(change: DiskChanges, cs: number, referenced = checkIndexes(change, cs)): Promise<Set<string>> {
    const missing = await this.missingChunks([...referenced]);
    if (missing.length > 0) {
      throw new RefugeError('failed_precondition', `${missing.length} chunk(s) referenced by the point are not stored`, {
        details: { missing: missing.slice(0, 20) },
        hint: 'upload the missing chunks, then commit again',
      });
    }
    // Looked for only on a misfit, so a seed's long list is not copied into a map here as well as in the tree's update.
    for (const [n, [index, hash]] of change.changes.entries()) {
      if (hash === null) continue;
      const length = this.blobs.rawLength(hash);
      const room = chunkLength(change.sizeBytes, cs, index);
      if (length !== room && change.changes.findLastIndex(([i]) => i === index) === n) throw new RefugeError('invalid_argument', `disk '${change.name}': chunk ${hash} has ${length ?? 0} bytes where chunk ${index} holds ${room}`);
    }
    return referenced;
  }

  /** What a staged commit (staged-commit.ts) uses of the store. */
  private stagedCommitHost(): StagedCommitHost {
    return {
      backend: this.backend,
      key: this.key,
      blobs: this.blobs,
      checkChanges: async (change, cs) => {
        for (const h of await this.checkChanges(change, cs)) this.uploads.delete(h); // the stage protects them now
      },
      applyChanges: (base, change, cs) => this.applyChanges(base, change, cs),
    };
  }

  /**
   * Stores one part of a point's changes ahead of its commit (staging.ts): for a change list too long for one
   * commit. The commit names the stage; parts may come in any order and a part sent again replaces it.
   */
  async stageChanges(replicationId: string, stageId: string, part: number, disks: StagedDisk[]): Promise<void> {
    await writeStagedPart(this.backend, this.key, replicationId, stageId, part, disks);
  }

  private async flushOrDiscard(replicationId: string, o = { index: false }): Promise<void> {
    try {
      await this.blobs.flush(o);
    } catch (err) {
      await this.blobs.discardPending();
      throw RefugeError.wrap(err, `committing a point of ${replicationId}; nothing was committed`);
    }
  }

  private async applyChanges(base: DiskManifest | undefined, change: DiskChanges, cs: number): Promise<Required<DiskManifest>> {
    const count = chunkCount(change.sizeBytes, cs);
    const length = (i: number) => chunkLength(change.sizeBytes, cs, i);
    const last = new Map(change.changes); // the last change of an index wins
    let root: string;
    let before: (i: number) => string | null;
    let storedChunks = 0;
    let storedBytes = 0;
    // A commit listing every chunk (an agent's resync) needs nothing of the parent's tree, which may have lost nodes
    // to bit rot (`refuge store repair` drops them): then the tree is built anew, storing the lost nodes again.
    const everyChunk = last.size === count;
    const readable = <T>(read: () => Promise<T>, fallback: T): Promise<T> =>
      read().catch((err: unknown) => {
        if (everyChunk && isRefugeError(err, 'integrity')) return fallback;
        throw err;
      });
    const result = base && base.sizeBytes === change.sizeBytes && base.chunkSize === cs
      ? await readable(() => updateTree(base.root, count, change.changes, this.blobs, this.blobs), undefined)
      : undefined;
    if (base && result) {
      root = result.root;
      before = (i) => result.previous.get(i) ?? null;
      storedChunks = base.storedChunks;
      storedBytes = base.storedBytes;
      for (const [i, h] of last) {
        const delta = (h !== null ? 1 : 0) - (before(i) !== null ? 1 : 0);
        storedChunks += delta;
        storedBytes += delta * length(i);
      }
    } else {
      // A new chunk size shares no chunk with the parent's tree: unlisted chunks would silently read as zeros.
      if (base && base.chunkSize !== cs && last.size !== count) {
        throw new RefugeError('invalid_argument', `disk '${change.name}' changes chunk size from ${base.chunkSize} to ${cs} bytes: every chunk must be listed (${last.size} of ${count} are)`);
      }
      // First point of a disk, or a resized disk: build from the base's chunks that still fit, plus the changes.
      const old = base && base.chunkSize === cs ? await readable(() => listChunks(base.root, chunkCount(base.sizeBytes, cs), this.blobs), []) : [];
      // A kept chunk whose place changes length (the old last one, the new last one) no longer fits: it must be listed.
      for (const i of new Set([old.length - 1, count - 1])) {
        if (base && i >= 0 && i < Math.min(count, old.length) && old[i] && !last.has(i) && chunkLength(base.sizeBytes, cs, i) !== length(i)) {
          throw new RefugeError('invalid_argument', `disk '${change.name}' was resized from ${base.sizeBytes} to ${change.sizeBytes} bytes: chunk ${i} changes length and must be listed`);
        }
      }
      before = (i) => old[i] ?? null;
      const final = new Map<number, string | null>();
      for (let i = 0; i < Math.min(count, old.length); i++) if (old[i]) final.set(i, old[i] as string);
      for (const [i, h] of last) final.set(i, h);
      root = (await updateTree(ZERO_HASH, count, [...final], this.blobs, this.blobs)).root;
      for (const [i, h] of final) {
        if (h === null) continue;
        storedChunks++;
        storedBytes += length(i);
      }
    }
    let changedChunks = 0;
    let changedBytes = 0;
    for (const [i, h] of last) {
      if (before(i) === h) continue;
      changedChunks++;
      changedBytes += length(i);
    }
    return { name: change.name, sizeBytes: change.sizeBytes, chunkSize: cs, root, storedChunks, storedBytes, changedChunks, changedBytes };
  }

  /** After a garbage collection rewrote the index mid-commit: every blob of the new point must still be there. */
  private async checkStillStored(m: PointManifest): Promise<void> {
    const gone: string[] = [];
    const seen = new Set<string>();
    const check = (h: string) => void (this.blobs.has(h) || gone.push(h));
    for (const d of m.disks) await collectBlobs(d.root, this.blobs, seen, check, check);
    if (gone.length > 0) {
      await this.blobs.discardPending();
      throw new RefugeError('failed_precondition', `${gone.length} blob(s) of the point were removed by a concurrent garbage collection; nothing was committed`, {
        details: { missing: gone.slice(0, 20) },
        hint: 'upload the missing chunks, then commit again',
      });
    }
  }

  /** Point ids of a replication, oldest first (ids sort by capture time). */
  async listPointIds(replicationId: string): Promise<string[]> {
    const prefix = pointsPrefix(replicationId);
    return (await this.backend.list(prefix)).filter((k) => k.endsWith('.json')).map((k) => k.slice(prefix.length, -'.json'.length));
  }

  /** Every replication with points in this store. */
  async listReplications(): Promise<string[]> {
    return [...new Set((await this.backend.list('points/')).map((k) => k.split('/')[1] as string))].sort();
  }

  /** Whether the store holds a point, asked of the backend for its manifest's key rather than read from a listing. */
  async hasPoint(replicationId: string, pointId: string): Promise<boolean> {
    return this.backend.exists(pointKey(replicationId, pointId));
  }

  async getPoint(replicationId: string, pointId: string): Promise<PointManifest> {
    const key = pointKey(replicationId, pointId);
    return decodeManifest(await this.backend.get(key), key, this.key);
  }

  async deletePoint(replicationId: string, pointId: string): Promise<void> {
    await this.backend.delete(pointKey(replicationId, pointId));
  }

  /** Every chunk hash of a disk of a point, null for zeros (reads the whole tree: for small disks and tests). */
  async diskChunks(point: PointManifest, diskName: string): Promise<(string | null)[]> {
    const disk = findDisk(point, diskName);
    return listChunks(disk.root, chunkCount(disk.sizeBytes, disk.chunkSize), this.blobs);
  }

  /** A disk's non-zero chunks at a point, as [index, hash] in ascending order: the size of its data, not of the disk. */
  async diskChunkEntries(point: PointManifest, diskName: string): Promise<[number, string][]> {
    const disk = findDisk(point, diskName);
    const out: [number, string][] = [];
    await forEachChunk(disk.root, chunkCount(disk.sizeBytes, disk.chunkSize), this.blobs, (i, h) => void out.push([i, h]));
    return out;
  }

  /** Bytes [offset, offset+length) of a disk at a point; zero chunks read as zeros, every chunk is verified. */
  async readRange(point: PointManifest, diskName: string, offset: number, length: number): Promise<Buffer> {
    const disk = findDisk(point, diskName);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > disk.sizeBytes) {
      throw new RefugeError('invalid_argument', `range ${offset}+${length} is outside disk '${diskName}' (${disk.sizeBytes} bytes)`);
    }
    const out = Buffer.alloc(length);
    if (length === 0) return out;
    const cs = disk.chunkSize;
    const wanted: [number, string][] = [];
    await forEachChunk(disk.root, chunkCount(disk.sizeBytes, cs), this.blobs, (i, h) => void wanted.push([i, h]), Math.floor(offset / cs), Math.floor((offset + length - 1) / cs) + 1);
    await forEachLimit(wanted, 8, async ([i, hash]) => {
      const data = await this.getChunk(hash, ` (point ${point.id}, disk ${diskName}, chunk ${i})`);
      const chunkStart = i * cs;
      const from = Math.max(offset, chunkStart);
      const to = Math.min(offset + length, chunkStart + data.length);
      data.copy(out, from - offset, from - chunkStart, to - chunkStart);
    });
    return out;
  }

  /**
   * Writes a disk of a point to a sparse raw image at `path` (zero chunks are holes), checking every chunk's hash,
   * decoding on every core while reads and writes overlap.
   */
  async materialize(point: PointManifest, diskName: string, path: string, options: MaterializeOptions = {}): Promise<{ sizeBytes: number; writtenBytes: number }> {
    return materializeDisk(this, point, diskName, path, options);
  }

  /** Reads and hash-checks every blob a point references; returns the problems found (empty when sound). */
  async verifyPoint(point: PointManifest): Promise<{ object: string; problem: string }[]> {
    return verifyPointBlobs(this, point);
  }

  /**
   * Where two points differ, per disk, as byte ranges; walks only the subtrees whose hashes differ. A disk whose
   * chunk size differs between the points is reported whole (conservative: its trees cannot be compared).
   */
  async diffPoints(a: PointManifest, b: PointManifest): Promise<{ disk: string; ranges: { offset: number; length: number }[] }[]> {
    const names = [...new Set([...a.disks, ...b.disks].map((d) => d.name))];
    const out = [];
    for (const name of names) {
      const da = a.disks.find((d) => d.name === name);
      const db = b.disks.find((d) => d.name === name);
      const size = Math.max(da?.sizeBytes ?? 0, db?.sizeBytes ?? 0);
      const cs = (db ?? da)?.chunkSize ?? this.chunkSize;
      if (da && db && da.chunkSize !== db.chunkSize) {
        // Trees of different chunk sizes index different byte ranges: comparing them by index would be wrong.
        out.push({ disk: name, ranges: size > 0 ? [{ offset: 0, length: size }] : [] });
        continue;
      }
      const tree = (d: DiskManifest | undefined) => ({ root: d?.root ?? ZERO_HASH, count: d ? chunkCount(d.sizeBytes, d.chunkSize) : 0 });
      const ranges = await diffTrees(tree(da), tree(db), this.blobs);
      out.push({ disk: name, ranges: ranges.map(([s, e]) => ({ offset: s * cs, length: Math.min(e * cs, size) - s * cs })) });
    }
    return out;
  }
}

/** Indexes within the disk and hashes well formed (else `invalid_argument`); the chunk hashes listed. */
function checkIndexes(change: DiskChanges, cs: number): Set<string> {
  const count = chunkCount(change.sizeBytes, cs);
  const referenced = new Set<string>();
  for (const [index, hash] of change.changes) {
    if (!Number.isInteger(index) || index < 0 || index >= count) {
      throw new RefugeError('invalid_argument', `disk '${change.name}': chunk index ${index} is outside 0..${count - 1}`);
    }
    if (hash !== null && !isChunkHash(hash)) throw new RefugeError('invalid_argument', `disk '${change.name}': '${hash}' is not a chunk hash`);
    if (hash !== null) referenced.add(hash);
  }
  return referenced;
}
