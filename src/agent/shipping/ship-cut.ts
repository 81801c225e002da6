import { RefugeError } from '../../core/errors.js';
import type { CommitPointRequest } from '../../protocol/schemas.js';
import { LEAF_SIZE, isZero, nameWithDigests, type BlobNaming } from '../../store/chunks.js';
import { DigestWriter, type LeafDigestFile } from '../leaf-digests.js';
import { leafPathFits, shipByLeaves } from './ship-by-leaves.js';
import { workerPool } from '../../store/worker-pool.js';
import { listedChunkCount, type Cut, type CutDisk } from '../capture/capture-mode.js';
import { chunksOfRuns } from '../capture/extents.js';
import { ChunkHashes } from '../chunk-hashes.js';
import type { ChunkUploader, UploadItem } from './chunk-uploader.js';
import type { Run } from '../../protocol/chunk-encoding.js';

export interface ShippedCut {
  /** What the commit lists: per disk, the chunks whose hash differs from the parent point. */
  disks: CommitPointRequest['disks'];
  /** Every chunk hash of every disk at the cut: the agent's base for the next cut once the point is committed. */
  hashes: Record<string, ChunkHashes>;
  /** Bytes read from the disks for this cut (what was hashed), and bytes of chunks that changed. */
  readBytes: number;
  changedBytes: number;
}

/**
 * Reads the chunks a cut lists, hashes each, keeps those whose hash differs from the base (the parent point's
 * chunk hashes, when the agent knows them) and hands their bytes to the uploader. This comparison is the same for
 * every capture mode, and it is why a mode may list more chunks than changed: they cost reading, never shipping.
 */
export async function shipCut(
  cut: Cut,
  o: {
    chunkSize: number;
    /** How the replication's store names chunks (store/chunks.ts). */
    naming: BlobNaming;
    /** Chunk hashes of the parent point per disk; a disk missing here (or resized) is compared against nothing. */
    base: Record<string, ChunkHashes>;
    uploader: ChunkUploader;
    /**
     * For a base fetched from the store rather than remembered (resync, re-protect): the runs of a changed chunk
     * that differ from its base chunk, found by block digests; used instead of the capture's change tracking,
     * which knows nothing of that base.
     */
    runsAgainstBase?(baseHash: string | null, data: Buffer): Promise<Run[] | undefined>;
    /**
     * Per disk, the leaf digests the agent keeps for a store of leaf-digest names (../leaf-digests.ts): chunks a
     * cdp cut wrote then have only their written leaves read and hashed, and every chunk read whole has its
     * digests recorded.
     */
    leafDigests?: Record<string, LeafDigestFile>;
    /** With `leafDigests`: chunks read whole anyway (ship-by-leaves.ts, `sampled`). */
    sampled?: (index: number) => boolean;
    /** There is no parent point (a first point): zero chunks of a disk without base need not be listed. */
    emptyParent?: boolean;
    onRead?(bytes: number): void;
    signal?: AbortSignal;
  },
): Promise<ShippedCut> {
  const shipped: ShippedCut = { disks: [], hashes: {}, readBytes: 0, changedBytes: 0 };
  for (const disk of cut.disks) {
    const count = Math.ceil(disk.sizeBytes / o.chunkSize);
    const previous = o.base[disk.name];
    const known = previous !== undefined && previous.length === count;
    const zeroRuns = disk.zeroChunks ?? [];
    const listed = listedChunkCount(disk);
    if (!known && listed !== count) {
      throw new RefugeError('internal', `disk ${disk.name}: the cut lists ${listed} of ${count} chunks but the base is unknown`);
    }
    const hashes = known ? previous.clone() : new ChunkHashes(count);
    const changes: [number, string | null][] = [];
    // Against no point at all, a zero chunk is no change: a sparse seed lists its data, not millions of holes.
    const unchanged = (index: number, hash: string | null) => (known ? previous.get(index) === hash : o.emptyParent === true && hash === null);
    // Chunks the capture knows are zero (holes of a sparse image): a zero hash, without reading a byte.
    for (const index of chunksOfRuns(zeroRuns)) {
      if (unchanged(index, null)) continue;
      hashes.set(index, null);
      changes.push([index, null]);
      shipped.changedBytes += Math.min(o.chunkSize, disk.sizeBytes - index * o.chunkSize);
    }
    // Changed chunks wait here, in order, while their runs against the base are looked up (several lookups at a
    // time, batched by the finder); they go to the uploader in order, one at a time, as it expects.
    const queue: { item: UploadItem; runs: Promise<Run[] | undefined> }[] = [];
    const drain = async (keep: number) => {
      while (queue.length > keep) {
        const { item, runs } = queue.shift() as (typeof queue)[number];
        const found = await runs;
        await o.uploader.add({ ...item, ...(found ? { runs: found } : {}) });
      }
    };
    const digestFile = o.naming === 'leaf16' && leafPathFits(o.chunkSize) ? o.leafDigests?.[disk.name] : undefined;
    const digestWrites = digestFile ? new DigestWriter(digestFile, o.chunkSize) : undefined;
    let readWhole = disk;
    if (digestFile && known && !o.runsAgainstBase && disk.changedRuns && disk.readRanges) {
      // Chunks whose new name follows from the leaves written: those leaves read, the rest never; the others below.
      const rest: number[] = [];
      const leafy = { chunkSize: o.chunkSize, disk, file: digestFile, previous, uploader: o.uploader, ...(o.sampled ? { sampled: o.sampled } : {}), ...(o.signal ? { signal: o.signal } : {}) };
      await shipByLeaves(leafy, (r) => {
        shipped.readBytes += r.readBytes;
        o.onRead?.(r.readBytes);
        hashes.set(r.index, r.hash);
        if (unchanged(r.index, r.hash)) return;
        changes.push([r.index, r.hash]);
        shipped.changedBytes += r.length;
      }, (index) => rest.push(index));
      readWhole = Object.create(disk, { chunkIndexes: { value: rest } }) as CutDisk;
    }
    // The next group is read and hashed (in a worker thread) while this one is compared and uploaded.
    for await (const group of hashedGroups(readWhole, o.chunkSize, o.naming, o.signal)) {
      for (const { index, data, hash, digests } of group) {
        o.signal?.throwIfAborted();
        shipped.readBytes += data.length;
        o.onRead?.(data.length);
        hashes.set(index, hash);
        if (digestWrites && digests) await digestWrites.add(index, digests);
        if (unchanged(index, hash)) continue;
        changes.push([index, hash]);
        shipped.changedBytes += data.length;
        if (hash === null) continue; // zero chunks are recorded in the point, never sent
        const baseHash = known ? previous.get(index) : null;
        if (known && o.runsAgainstBase) {
          const own = Buffer.from(data); // held while its runs are looked up, after this group's buffer is reused
          const item = { hash, data: own, base: baseHash };
          const runs = o.runsAgainstBase(baseHash, own);
          runs.catch(() => undefined); // awaited in order by drain; a failure meanwhile must not go unhandled
          queue.push({ item, runs });
          await drain(RUN_LOOKUPS_AHEAD);
        } else {
          const runs = known ? disk.changedRuns?.(index) : undefined;
          await o.uploader.add({ hash, data, ...(known ? { base: baseHash } : {}), ...(runs ? { runs } : {}) }); // copies `data`
        }
      }
    }
    await drain(0);
    await digestWrites?.flush();
    if (readWhole !== disk) changes.sort((a, b) => a[0] - b[0]); // the chunks shipped by leaves came first
    shipped.hashes[disk.name] = hashes;
    shipped.disks.push({ name: disk.name, sizeBytes: disk.sizeBytes, changes });
  }
  await o.uploader.finish();
  return shipped;
}

/**
 * Changed chunks whose runs against a base from the store are looked up ahead of the one handed to the uploader
 * (their copies are held meanwhile: at most this many chunks beyond the uploader's batches).
 */
const RUN_LOOKUPS_AHEAD = 32;

/**
 * Bytes read and hashed as one group. While the caller compares and ships one group, the next is read and hashed:
 * two group buffers and one hashing task at a time, so the agent starts one worker thread, not one per core (each
 * is a V8 isolate of ~13 MiB; P11 in docs/benchmarks.md). Hashing on one core (~1.4 GB/s with SHA-NI) outruns
 * what a seed reads and uploads.
 */
const GROUP_BYTES = 4 * 1024 * 1024;

interface HashedChunk {
  index: number;
  /** A view of the group's buffer, valid until the next group is asked for (copy what must live longer). */
  data: Buffer;
  /** The chunk's name as the store names chunks, null for a zero chunk. */
  hash: string | null;
  /** With leaf-digest names: the chunk's leaf digests (32 bytes per 16 KiB leaf), absent for a zero chunk. */
  digests?: Buffer;
}

/**
 * The chunks a cut lists, in order, in groups of about GROUP_BYTES, with their hashes. Reading a whole disk (a
 * first point, a resync, a re-protect's comparison) was bound by SHA-256 on the main thread: groups are read ahead
 * (consecutive chunks in one read where the capture offers `readRun`) and hashed in the store's worker pool. A
 * group's buffer moves to the worker and back without copies and is reused for a later group once the caller has
 * moved on, so a disk scan allocates two buffers, not one per chunk. A group of one chunk
 * (a cdp cut of a few chunks) is hashed here, which costs less than a round trip to a worker. `ahead` groups are
 * read and hashed ahead: one while shipping (what is shipped paces the reading); a re-protect's pre-hash, which
 * ships nothing and is on the re-protect's critical path, hashes two at once (a second worker thread, meanwhile).
 */
export async function* hashedGroups(disk: CutDisk, chunkSize: number, naming: BlobNaming, signal?: AbortSignal, ahead = 1): AsyncGenerator<HashedChunk[]> {
  const perGroup = Math.max(1, Math.floor(GROUP_BYTES / chunkSize));
  const indexes = disk.chunkIndexes;
  const groups = Math.ceil(indexes.length / perGroup);
  const spare: ArrayBuffer[] = [];
  const start = (g: number): Promise<{ chunks: HashedChunk[]; buffer?: ArrayBuffer }> => {
    const work = hashGroup(disk, indexes.slice(g * perGroup, (g + 1) * perGroup), chunkSize, naming, spare, signal);
    work.catch(() => undefined); // awaited in order below; a failure ahead of it must not go unhandled meanwhile
    return work;
  };
  let next = 0;
  const queue: ReturnType<typeof start>[] = [];
  while (next < groups && queue.length < ahead) queue.push(start(next++));
  while (queue.length > 0) {
    const group = await (queue.shift() as ReturnType<typeof start>);
    if (next < groups) queue.push(start(next++)); // read and hashed while the caller works on this group
    yield group.chunks;
    // The caller is done with this group's views: its buffer serves a later group.
    if (group.buffer?.byteLength === perGroup * chunkSize) spare.push(group.buffer);
  }
}

async function hashGroup(disk: CutDisk, indexes: readonly number[], chunkSize: number, naming: BlobNaming, spare: ArrayBuffer[], signal?: AbortSignal): Promise<{ chunks: HashedChunk[]; buffer?: ArrayBuffer }> {
  signal?.throwIfAborted();
  const first = indexes[0] as number;
  if (indexes.length === 1) {
    const data = await disk.read(first);
    return { chunks: [{ index: first, data, ...(isZero(data) ? { hash: null } : nameWithDigests(data, naming)) }] };
  }
  // Every chunk but a disk's last is chunkSize long, and the last comes last: chunk n of the group is at n * chunkSize.
  const lastLength = Math.min(chunkSize, disk.sizeBytes - (indexes.at(-1) as number) * chunkSize);
  const total = (indexes.length - 1) * chunkSize + lastLength;
  const full = indexes.length * chunkSize;
  // Node's memory, not V8's: V8-allocated memory costs the posting thread time in proportion to its size when it
  // moves to the worker (worker-pool.ts).
  const batch = new Uint8Array(spare.pop() ?? Buffer.allocUnsafeSlow(full).buffer, 0, total);
  const readRun = disk.readRun?.bind(disk);
  if (readRun) {
    // Each run of consecutive chunks in one read, straight into its place in the group's buffer. Scattered chunks (a
    // cdp point of random writes) were read one buffer each and copied here: a fresh 256 KiB per chunk, faulted in
    // page by page and left to the garbage collector, about a third of the agent's time under P5's load.
    const reads: Promise<void>[] = [];
    for (let n = 0; n < indexes.length; ) {
      let m = n + 1;
      while (m < indexes.length && (indexes[m] as number) === (indexes[m - 1] as number) + 1) m++;
      const from = n * chunkSize;
      reads.push(readRun(indexes[n] as number, m - n, batch.subarray(from, Math.min(m * chunkSize, total))));
      n = m;
    }
    await Promise.all(reads);
  } else {
    const datas = await Promise.all(indexes.map((i) => disk.read(i)));
    datas.forEach((d, n) => batch.set(d, n * chunkSize));
  }
  const reply = await workerPool().run({ op: 'hash', key: null, naming, data: batch, chunkSize }, true);
  const hashes = Buffer.from(reply.hashes);
  const perChunk = Math.ceil(chunkSize / LEAF_SIZE) * 32;
  const digests = reply.digests ? Buffer.from(reply.digests) : undefined;
  const chunks = indexes.map((index, n): HashedChunk => {
    const hash = hashes.subarray(n * 32, n * 32 + 32);
    const data = Buffer.from(reply.input, n * chunkSize, Math.min(chunkSize, total - n * chunkSize));
    if (isZero(hash)) return { index, data, hash: null };
    const own = digests?.subarray(n * perChunk, n * perChunk + Math.ceil(data.length / LEAF_SIZE) * 32);
    return { index, data, hash: hash.toString('hex'), ...(own ? { digests: own } : {}) };
  });
  return { chunks, buffer: reply.input };
}
