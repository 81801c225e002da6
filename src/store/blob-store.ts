import { RefugeError, isRefugeError } from '../core/errors.js';
import type { StoreBackend } from './backend.js';
import { blobName, type BlobNaming } from './chunks.js';
import { BLOB_DELTA, decodeBlob, encodeBlob, type EncodedBlob } from './blob-codec.js';
import { MAX_DELTA_DEPTH, decodeChain } from './delta-frame.js';
import { BlobTable, type BlobLocation } from './blob-table.js';
import { INDEX_PREFIX, decodeIndexFile, encodeIndexFile } from './index-file.js';
import { PackBuilder, packIdOfKey, packKey, parsePack, releasePackBuffer, type BlobEntry, type BlobType, type PackInfo } from './pack.js';
import type { DataKey } from './sealing.js';
import type { NodeSink, NodeSource } from './tree.js';

/**
 * Blobs in packs, found through the index: the layer under the replica store that knows packs and index files and
 * nothing of points. New blobs collect in an open pack per blob type (data chunks and tree nodes apart, so restores
 * read data packs and walks read small tree packs); a full pack is written, and index files are written for written
 * packs at every commit and every few packs. Until its pack is written a blob is *pending*: readable from memory,
 * and lost (reported missing again) if the write fails.
 */

export interface BlobStoreOptions {
  backend: StoreBackend;
  key: DataKey;
  compressionLevel: number;
  packSize: number;
  /** How the store names its blobs (its format): every read checks a blob against its name so computed. */
  naming: BlobNaming;
  /** Whether the store may hold delta blobs (format 4): its index keeps their bases, and reads follow chains. */
  deltas?: boolean;
}

/** Written packs waiting for an index file; past this many one is written without waiting for a commit. */
const UNINDEXED_PACKS_LIMIT = 4;
const NODE_CACHE_ENTRIES = 4096;
/** Pack writes under way at once: enough to overlap writing with hashing and compressing, bounded in memory. */
const PACK_WRITES_IN_FLIGHT = 3;

export class BlobStore implements NodeSource, NodeSink {
  private table: BlobTable;
  private readonly loadedIndexFiles = new Set<string>();
  /** Index files that do not decode: their packs were found by reading pack headers instead. */
  readonly damagedIndexFiles = new Set<string>();
  private readonly knownPacks = new Set<string>();
  private readonly open = new Map<BlobType, PackBuilder>();
  private readonly pending = new Map<string, { builder: PackBuilder; entry: BlobEntry }>();
  private unindexed: PackInfo[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private readonly writes = new Set<Promise<void>>();
  private readonly failures: RefugeError[] = [];
  private readonly nodeCache = new Map<string, Buffer>();

  constructor(readonly o: BlobStoreOptions) {
    this.table = new BlobTable(1024, o.deltas === true);
  }

  get backend(): StoreBackend {
    return this.o.backend;
  }

  async load(): Promise<void> {
    for (const name of await this.backend.list(INDEX_PREFIX)) await this.loadIndexFile(name);
    if (this.damagedIndexFiles.size > 0) await this.adoptUnindexedPacks();
  }

  /** Loads an index file; a damaged one is set aside (verify reports it, gc replaces it) instead of failing. */
  private async loadIndexFile(name: string): Promise<void> {
    let packs: PackInfo[];
    try {
      packs = decodeIndexFile(await this.backend.get(name), name, this.o.key);
    } catch (err) {
      if (!isRefugeError(err, 'integrity')) throw err;
      this.damagedIndexFiles.add(name);
      return;
    }
    for (const p of packs) this.addPack(p);
    this.loadedIndexFiles.add(name);
  }

  /**
   * After a damaged index file: finds its packs by reading the header of every pack no good index file names
   * (packs describe themselves), so the points they hold stay readable.
   */
  private async adoptUnindexedPacks(): Promise<void> {
    for (const key of await this.backend.list('packs/')) {
      const id = packIdOfKey(key);
      if (this.knownPacks.has(id)) continue;
      try {
        this.addPack(parsePack(await this.backend.get(key), id, this.o.key));
      } catch (err) {
        if (!isRefugeError(err, 'integrity') && !isRefugeError(err, 'not_found')) throw err; // damaged: verify names it
      }
    }
  }

  private addPack(p: PackInfo): void {
    this.knownPacks.add(p.id);
    for (const e of p.blobs) this.table.add(e.hash, { packId: p.id, type: e.type, offset: e.offset, length: e.length, rawLength: e.rawLength, flags: e.flags, ...(e.base ? { base: e.base } : {}) });
  }

  /**
   * Catches up with index files written or deleted by others (another process, garbage collection). Returns
   * `rebuilt` when a loaded index file is gone: packs may have been deleted, so the table was rebuilt.
   */
  async refresh(): Promise<{ rebuilt: boolean }> {
    const names = await this.backend.list(INDEX_PREFIX);
    const present = new Set(names);
    const lost = [...this.loadedIndexFiles].some((n) => !present.has(n));
    if (lost) {
      this.table = new BlobTable(this.table.count, this.o.deltas === true);
      this.knownPacks.clear();
      this.loadedIndexFiles.clear();
      this.damagedIndexFiles.clear();
      for (const p of this.unindexed) this.addPack(p);
    }
    const damagedBefore = this.damagedIndexFiles.size;
    for (const name of names) {
      if (!this.loadedIndexFiles.has(name) && !this.damagedIndexFiles.has(name)) {
        try {
          await this.loadIndexFile(name);
        } catch (err) {
          if (!isRefugeError(err, 'not_found')) throw err; // deleted since the listing: its packs are indexed elsewhere
        }
      }
    }
    if (this.damagedIndexFiles.size > (lost ? 0 : damagedBefore)) await this.adoptUnindexedPacks();
    return { rebuilt: lost };
  }

  /**
   * Whether the store holds a blob it can read: in a store with deltas, a delta counts only while its whole chain is
   * held (a repair may have removed a damaged base), so that the sender of its chunk is asked for it again.
   */
  has(hash: string): boolean {
    if (this.pending.has(hash)) return true;
    if (!this.o.deltas) return this.table.has(hash);
    const last = this.entryOf(this.chainOf(hash).at(-1) as string);
    return last !== undefined && last.base === undefined;
  }

  /**
   * A blob's chain (delta-frame.ts) from the index and the open packs: its name, then its bases' newest first; one
   * name for a blob that is not a delta. A base the store lacks ends it, and it stops at MAX_DELTA_DEPTH + 1 names:
   * callers find either from the last name (not held, or itself a delta).
   */
  chainOf(hash: string): string[] {
    const chain = [hash];
    for (let e = this.entryOf(hash); e?.base !== undefined && chain.length <= MAX_DELTA_DEPTH; e = this.entryOf(e.base)) chain.push(e.base);
    return chain;
  }

  /** Where a blob is, pending or written (its base with it when a delta). */
  private entryOf(hash: string): { base?: string } | undefined {
    return this.pending.get(hash)?.entry ?? this.table.get(hash);
  }

  /** The length of a blob's raw bytes (a chunk's length), stored or pending; undefined when the store lacks it. */
  rawLength(hash: string): number | undefined {
    return this.pending.get(hash)?.entry.rawLength ?? this.table.get(hash)?.rawLength;
  }

  location(hash: string): BlobLocation | undefined {
    return this.table.get(hash);
  }

  /**
   * Adds an encoded blob to the open pack of its type, unless the store has it. A full pack starts being written
   * in the background; this waits only when several pack writes are already under way (back-pressure).
   */
  async add(type: BlobType, hash: string, blob: EncodedBlob): Promise<void> {
    this.addNow(type, hash, blob);
    await this.settle();
  }

  /** Like add without waiting: the blob's bytes are copied, so the caller may reuse its buffer at once. */
  addNow(type: BlobType, hash: string, blob: EncodedBlob): void {
    this.addToOpenPack(type, hash, blob);
    const builder = this.open.get(type);
    if (builder && builder.size >= this.o.packSize) {
      this.open.delete(type);
      this.startWrite(builder);
    }
  }

  /** Waits while several pack writes are under way, and reports a failed one (see add). */
  async settle(): Promise<void> {
    while (this.writes.size >= PACK_WRITES_IN_FLIGHT) await Promise.race(this.writes);
    // Report a failed pack write to the next writer (e.g. a full disk), rather than only as missing chunks later;
    // writes still under way belong to the same incident, so they are awaited and reported as one.
    if (this.failures.length > 0) {
      await Promise.allSettled([...this.writes]);
      const failure = this.failures[0] as RefugeError;
      this.failures.length = 0;
      throw failure;
    }
  }

  private addToOpenPack(type: BlobType, hash: string, blob: EncodedBlob): void {
    if (this.has(hash)) return;
    let builder = this.open.get(type);
    if (!builder) this.open.set(type, (builder = new PackBuilder(type === 'data' ? this.o.packSize + 1024 * 1024 : 256 * 1024)));
    this.pending.set(hash, { builder, entry: builder.add(type, hash, blob) });
  }

  /** A blob's name for `bytes`, as this store names blobs (tree nodes are named as chunks are). */
  nameOf(bytes: Uint8Array): string {
    return blobName(bytes, this.o.naming);
  }

  storeNode(hash: string, bytes: Buffer): void {
    this.nodeCache.set(hash, bytes);
    if (!this.has(hash)) this.addToOpenPack('tree', hash, encodeBlob(bytes, this.o.compressionLevel, this.o.key, this.o.naming));
  }

  /** Writes a pack in the background; a failure forgets its blobs (they become missing) and is reported by flush. */
  private startWrite(builder: PackBuilder): void {
    const { info, data } = builder.finish(this.o.key);
    const write: Promise<void> = this.backend.put(packKey(info.id), data).then(
      () => {
        this.addPack(info);
        for (const e of builder.blobs) this.pending.delete(e.hash);
        this.unindexed.push(info);
      },
      (err: unknown) => {
        for (const e of builder.blobs) this.pending.delete(e.hash);
        this.failures.push(RefugeError.wrap(err, `writing pack ${packKey(info.id)}`));
      },
    ).finally(() => {
      this.writes.delete(write);
      releasePackBuffer(data); // nothing reads it now: its blobs are read from the backend
    });
    this.writes.add(write);
  }

  /**
   * Writes the open packs, waits for every pack write, then (with `index`, or when enough packs wait) writes an
   * index file for the written packs not yet in one. Flushes run one at a time. After a failed pack write the
   * first failure is thrown: the blobs of that pack are missing again, the caller's commit must not go on.
   */
  flush(options: { index: boolean }): Promise<void> {
    const run = this.flushing.catch(() => undefined).then(() => this.flushNow(options.index));
    this.flushing = run;
    return run;
  }

  private async flushNow(index: boolean): Promise<void> {
    for (const builder of this.open.values()) if (builder.blobs.length > 0) this.startWrite(builder);
    this.open.clear();
    while (this.writes.size > 0) await Promise.all(this.writes);
    const failure = this.failures.shift();
    this.failures.length = 0;
    if (failure) throw failure;
    if (this.unindexed.length > 0 && (index || this.unindexed.length >= UNINDEXED_PACKS_LIMIT)) {
      const packs = this.unindexed;
      this.unindexed = [];
      const { name, data } = encodeIndexFile(packs, this.o.key);
      try {
        await this.backend.put(name, data);
      } catch (err) {
        this.unindexed.unshift(...packs); // the packs exist; a later index file can still name them
        throw err;
      }
      this.loadedIndexFiles.add(name);
    }
  }

  /** Drops blobs not yet written (after a failure the caller cannot recover from, e.g. the disk being full). */
  async discardPending(): Promise<void> {
    await Promise.allSettled([...this.writes]);
    this.failures.length = 0;
    for (const { entry } of this.pending.values()) this.pending.delete(entry.hash);
    this.open.clear();
  }

  /** The stored bytes of a blob and where they are; `not_found` when no index knows it. */
  /**
   * Where a stored blob's bytes lie in a local pack file, when the backend keeps packs as files and the blob is
   * written (not pending): for worker threads that read it themselves (a blob moved since is read by `readStored`).
   */
  localLocation(hash: string): (BlobLocation & { file: string }) | undefined {
    if (!this.backend.localFile || this.pending.has(hash)) return undefined;
    const loc = this.table.get(hash);
    return loc ? { ...loc, file: this.backend.localFile(packKey(loc.packId)) } : undefined;
  }

  async readStored(hash: string): Promise<{ stored: Buffer; loc: BlobLocation }> {
    const p = this.pending.get(hash);
    if (p) return { stored: p.builder.storedBytes(p.entry), loc: { packId: '(pending)', ...p.entry } };
    for (let attempt = 0; ; attempt++) {
      const loc = this.table.get(hash);
      if (!loc) {
        // Another process (the vault's replicator beside a standalone one, an import) may have written it since
        // this table was loaded: look once more with the index files written meanwhile.
        if (attempt === 0) {
          await this.refresh();
          continue;
        }
        throw new RefugeError('not_found', `blob ${hash} is not in the store's index`, { details: { blob: hash } });
      }
      try {
        const stored = await this.backend.getRange(packKey(loc.packId), loc.offset, loc.length);
        return { stored, loc };
      } catch (err) {
        if (!isRefugeError(err, 'not_found')) throw err;
        // Garbage collection may have moved the blob to another pack: look again once with a fresh index.
        if (attempt > 1 || !(await this.refresh()).rebuilt) {
          throw new RefugeError('integrity', `pack ${packKey(loc.packId)} holding blob ${hash} is missing`, { details: { object: packKey(loc.packId), blob: hash } });
        }
      }
    }
  }

  /** A blob's raw bytes, checked against its hash; damage is an `integrity` error naming pack and blob. */
  async read(hash: string, context = ''): Promise<Buffer> {
    let stored: Buffer;
    let loc: BlobLocation;
    try {
      ({ stored, loc } = await this.readStored(hash));
    } catch (err) {
      if (isRefugeError(err, 'not_found')) {
        throw new RefugeError('integrity', `blob ${hash} is missing from the store${context}`, { details: { blob: hash, object: `blob ${hash}` } });
      }
      if (isRefugeError(err)) throw RefugeError.wrap(err, `reading blob ${hash}${context}`);
      throw err;
    }
    if (loc.flags & BLOB_DELTA) return this.readChain(hash, stored, loc, context);
    const raw = decodeBlob(stored, loc.flags, loc.rawLength, { hash, naming: this.o.naming }, this.o.key);
    if (typeof raw === 'string') throw corruptBlob(loc.packId, hash, raw, context);
    return raw;
  }

  /**
   * A delta blob's raw bytes: its chain's stored bytes read base by base (the index names each base), then decoded
   * and checked as one (delta-frame.ts). A missing base is damage to this blob, named as such.
   */
  private async readChain(hash: string, stored: Buffer, loc: BlobLocation, context: string): Promise<Buffer> {
    const chain = [stored, ...(await this.readBases(hash, loc, context))];
    const raw = decodeChain(chain, loc.rawLength, hash);
    if (typeof raw === 'string') throw corruptBlob(loc.packId, hash, raw, context);
    return raw;
  }

  /**
   * The stored bytes of the bases a delta (`hash`, at `loc`) is read through, newest first: what decodeChain needs
   * after the delta's own. A missing base, or a chain longer than chains go, is damage to the delta, named as such.
   */
  async readBases(hash: string, loc: BlobLocation, context = ''): Promise<Buffer[]> {
    const names = this.chainOf(hash).slice(1);
    const last = names.at(-1);
    if (last !== undefined && this.entryOf(last) === undefined) throw corruptBlob(loc.packId, hash, `its base ${last} is missing`, context);
    if (last !== undefined && this.entryOf(last)?.base !== undefined) throw corruptBlob(loc.packId, hash, `its chain is longer than ${MAX_DELTA_DEPTH} deltas`, context);
    return Promise.all(names.map(async (base) => {
      try {
        return (await this.readStored(base)).stored;
      } catch (err) {
        if (isRefugeError(err, 'not_found')) throw corruptBlob(loc.packId, hash, `its base ${base} is missing`, context);
        throw RefugeError.wrap(err, `reading blob ${hash}${context} (its base ${base})`);
      }
    }));
  }

  async loadNode(hash: string): Promise<Buffer> {
    const cached = this.nodeCache.get(hash);
    if (cached) {
      this.nodeCache.delete(hash); // re-insert: a Map iterates oldest first, so this keeps it least-recently used last
      this.nodeCache.set(hash, cached);
      return cached;
    }
    const bytes = await this.read(hash, ' (tree node)');
    this.nodeCache.set(hash, bytes);
    if (this.nodeCache.size > NODE_CACHE_ENTRIES) this.nodeCache.delete(this.nodeCache.keys().next().value as string);
    return bytes;
  }
}

export function corruptBlob(packId: string, hash: string, reason: string, context = ''): RefugeError {
  const object = packKey(packId);
  return new RefugeError('integrity', `blob ${hash} in pack ${object} is corrupt: ${reason}${context}`, {
    hint: 'run `refuge store verify` to find every damaged object; a resync repairs it from the source',
    details: { object, blob: hash },
  });
}
