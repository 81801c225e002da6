import { RefugeError } from '../../core/errors.js';
import type { CommitPointRequest } from '../../protocol/schemas.js';
import { chunkHash, isZero } from '../../store/chunks.js';
import { workerPool } from '../../store/worker-pool.js';
import type { Cut, CutDisk } from '../capture/capture-mode.js';
import type { ChunkUploader } from './chunk-uploader.js';
import type { Run } from '../../protocol/chunk-encoding.js';

export interface ShippedCut {
  /** What the commit lists: per disk, the chunks whose hash differs from the parent point. */
  disks: CommitPointRequest['disks'];
  /** Every chunk hash of every disk at the cut: the agent's base for the next cut once the point is committed. */
  hashes: Record<string, (string | null)[]>;
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
    /** Chunk hashes of the parent point per disk; a disk missing here (or resized) is compared against nothing. */
    base: Record<string, (string | null)[]>;
    uploader: ChunkUploader;
    /**
     * For a base fetched from the store rather than remembered (resync, re-protect): the runs of a changed chunk
     * that differ from its base chunk, found by block digests; used instead of the capture's change tracking,
     * which knows nothing of that base.
     */
    runsAgainstBase?(baseHash: string | null, data: Buffer): Promise<Run[] | undefined>;
    onRead?(bytes: number): void;
    signal?: AbortSignal;
  },
): Promise<ShippedCut> {
  const shipped: ShippedCut = { disks: [], hashes: {}, readBytes: 0, changedBytes: 0 };
  for (const disk of cut.disks) {
    const count = Math.ceil(disk.sizeBytes / o.chunkSize);
    const previous = o.base[disk.name];
    const known = previous !== undefined && previous.length === count;
    if (!known && disk.chunkIndexes.length !== count) {
      throw new RefugeError('internal', `disk ${disk.name}: the cut lists ${disk.chunkIndexes.length} of ${count} chunks but the base is unknown`);
    }
    const hashes = known ? [...previous] : new Array<string | null>(count).fill(null);
    const changes: [number, string | null][] = [];
    // Groups are read and hashed ahead (hashing on every core) while earlier ones are compared and uploaded.
    for await (const group of hashedGroups(disk, o.chunkSize, o.signal)) {
      for (const { index, data, hash } of group) {
        o.signal?.throwIfAborted();
        shipped.readBytes += data.length;
        o.onRead?.(data.length);
        hashes[index] = hash;
        if (known && previous[index] === hash) continue;
        changes.push([index, hash]);
        shipped.changedBytes += data.length;
        if (hash === null) continue; // zero chunks are recorded in the point, never sent
        const baseHash = known ? (previous[index] ?? null) : null;
        const runs = !known ? undefined : o.runsAgainstBase ? await o.runsAgainstBase(baseHash, data) : disk.changedRuns?.(index);
        await o.uploader.add({ hash, data, ...(known ? { base: previous[index] ?? null } : {}), ...(runs ? { runs } : {}) });
      }
    }
    shipped.hashes[disk.name] = hashes;
    shipped.disks.push({ name: disk.name, sizeBytes: disk.sizeBytes, changes });
  }
  await o.uploader.finish();
  return shipped;
}

/** Bytes read and hashed as one group, and how many groups are read ahead of the one being compared and shipped. */
const GROUP_BYTES = 8 * 1024 * 1024;
const GROUPS_AHEAD = 3;

interface HashedChunk {
  index: number;
  data: Buffer;
  /** SHA-256 of the chunk, null for a zero chunk. */
  hash: string | null;
}

/**
 * The chunks a cut lists, in order, in groups of about GROUP_BYTES, with their hashes. Reading a whole disk (a
 * first point, a resync, a re-protect's comparison) is bound by SHA-256 on one core otherwise: groups are read
 * concurrently and hashed in the store's worker pool (one thread per core). A group of one chunk (a cdp cut of
 * a few chunks) is hashed here, which costs less than a round trip to a worker.
 */
async function* hashedGroups(disk: CutDisk, chunkSize: number, signal?: AbortSignal): AsyncGenerator<HashedChunk[]> {
  const perGroup = Math.max(1, Math.floor(GROUP_BYTES / chunkSize));
  const indexes = disk.chunkIndexes;
  const groups = Math.ceil(indexes.length / perGroup);
  const start = (g: number): Promise<HashedChunk[]> => {
    const work = hashGroup(disk, indexes.slice(g * perGroup, (g + 1) * perGroup), chunkSize, signal);
    work.catch(() => undefined); // awaited in order below; a failure ahead of it must not go unhandled meanwhile
    return work;
  };
  const ahead: Promise<HashedChunk[]>[] = [];
  let next = 0;
  while (next < groups && ahead.length < GROUPS_AHEAD) ahead.push(start(next++));
  while (ahead.length > 0) {
    const group = await (ahead.shift() as Promise<HashedChunk[]>);
    if (next < groups) ahead.push(start(next++));
    yield group;
  }
}

async function hashGroup(disk: CutDisk, indexes: readonly number[], chunkSize: number, signal?: AbortSignal): Promise<HashedChunk[]> {
  signal?.throwIfAborted();
  const datas = await Promise.all(indexes.map((i) => disk.read(i)));
  if (datas.length === 1) {
    const data = datas[0] as Buffer;
    return [{ index: indexes[0] as number, data, hash: isZero(data) ? null : chunkHash(data) }];
  }
  // One buffer for the worker (its memory moves there and back): every chunk but the last is chunkSize long.
  const total = datas.reduce((n, d) => n + d.length, 0);
  const batch = new Uint8Array(new ArrayBuffer(total));
  let at = 0;
  for (const d of datas) {
    if (at % chunkSize !== 0) throw new RefugeError('internal', `disk ${disk.name}: a short chunk inside a group`);
    batch.set(d, at);
    at += d.length;
  }
  const reply = await workerPool().run({ op: 'hash', key: null, data: batch, chunkSize }, true);
  const hashes = Buffer.from(reply.hashes);
  return datas.map((data, n) => {
    const hash = hashes.subarray(n * 32, n * 32 + 32);
    return { index: indexes[n] as number, data, hash: isZero(hash) ? null : hash.toString('hex') };
  });
}
