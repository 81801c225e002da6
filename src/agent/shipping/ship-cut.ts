import { RefugeError } from '../../core/errors.js';
import type { CommitPointRequest } from '../../protocol/schemas.js';
import { chunkHash, isZero } from '../../store/chunks.js';
import type { Cut } from '../capture/capture-mode.js';
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
    for (const index of disk.chunkIndexes) {
      o.signal?.throwIfAborted();
      const data = await disk.read(index);
      shipped.readBytes += data.length;
      o.onRead?.(data.length);
      const hash = isZero(data) ? null : chunkHash(data);
      hashes[index] = hash;
      if (known && previous[index] === hash) continue;
      changes.push([index, hash]);
      shipped.changedBytes += data.length;
      if (hash === null) continue; // zero chunks are recorded in the point, never sent
      const baseHash = known ? (previous[index] ?? null) : null;
      const runs = !known ? undefined : o.runsAgainstBase ? await o.runsAgainstBase(baseHash, data) : disk.changedRuns?.(index);
      await o.uploader.add({ hash, data, ...(known ? { base: previous[index] ?? null } : {}), ...(runs ? { runs } : {}) });
    }
    shipped.hashes[disk.name] = hashes;
    shipped.disks.push({ name: disk.name, sizeBytes: disk.sizeBytes, changes });
  }
  await o.uploader.finish();
  return shipped;
}
