import { chunksOfRuns } from './capture/extents.js';
import { ChunkHashes } from './chunk-hashes.js';
import { listedChunkCount, type Cut, type CutDisk } from './capture/capture-mode.js';
import { hashedGroups } from './shipping/ship-cut.js';
import type { BlobNaming } from '../store/chunks.js';

/**
 * A re-protect's pre-hash (orchestration README, "Re-protect"). While the former site's store is seeded from the
 * machine's former disks, the agent where the machine now runs is told `stop` with `reprotectPending`: it reads and
 * hashes its disks through a cut of its own, which it completes at once (a cdp capture then tracks the writes from
 * that instant). Once it may ship with the seed as parent, its cut is narrowed to the chunks whose pre-hash differs
 * from the seed's, plus those the capture saw written since: only those are read again, and the two phases,
 * which run at different sites, overlap instead of following each other.
 *
 * Consistency: a cdp capture lists every chunk written since the pre-hash, so the point is its cut's instant. A
 * scan vouches for nothing (it lists every chunk): a chunk equal to the seed at the pre-hash and written after it
 * is missed by this point (the next scan finds it, comparing every chunk), which is the consistency of a scan
 * without a snapshot, and the point is dated at the pre-hash.
 */
export interface Prehash {
  replicationId: string;
  chunkSize: number;
  /** The naming the hashes were computed with (the store's, store/chunks.ts). */
  naming: BlobNaming;
  capturedAt: Date;
  /** Per disk, the chunk hashes at the pre-hash (null: a zero chunk). */
  hashes: Record<string, ChunkHashes>;
  readBytes: number;
}

/** Reads and hashes every chunk of the cut (the cut must list every chunk), on every core as shipping does. */
export async function prehashCut(cut: Cut, o: { replicationId: string; chunkSize: number; naming: BlobNaming; signal?: AbortSignal }): Promise<Prehash> {
  const prehash: Prehash = { replicationId: o.replicationId, chunkSize: o.chunkSize, naming: o.naming, capturedAt: cut.capturedAt, hashes: {}, readBytes: 0 };
  for (const disk of cut.disks) {
    const hashes = new ChunkHashes(Math.ceil(disk.sizeBytes / o.chunkSize)); // the cut's holes stay zero chunks
    for await (const group of hashedGroups(disk, o.chunkSize, o.naming, o.signal, 2)) {
      for (const { index, data, hash } of group) {
        hashes.set(index, hash);
        prehash.readBytes += data.length;
      }
    }
    prehash.hashes[disk.name] = hashes;
  }
  return prehash;
}

/** The pre-hash can stand in for reading every chunk: it and the seed `base` have every disk, at its size. */
export function prehashCovers(prehash: Prehash, base: Record<string, ChunkHashes>, disks: readonly { name: string; sizeBytes: number }[]): boolean {
  return disks.every((d) => {
    const count = Math.ceil(d.sizeBytes / prehash.chunkSize);
    return prehash.hashes[d.name]?.length === count && base[d.name]?.length === count;
  });
}

/**
 * The cut to ship against the seed `base`: per disk, the chunks whose pre-hash differs from the base, plus those
 * the cut lists when it lists fewer than all (a capture that tracked the writes since the pre-hash). Undefined when
 * a disk of the cut is unknown to the pre-hash or the base, or resized since.
 */
export function narrowedCut(cut: Cut, prehash: Prehash, base: Record<string, ChunkHashes>): Cut | undefined {
  const disks: CutDisk[] = [];
  let vouched = true;
  for (const disk of cut.disks) {
    const count = Math.ceil(disk.sizeBytes / prehash.chunkSize);
    const before = prehash.hashes[disk.name];
    const seed = base[disk.name];
    if (before?.length !== count || seed?.length !== count) return undefined;
    const zeroRuns = disk.zeroChunks ?? [];
    const listsAll = listedChunkCount(disk) === count;
    if (listsAll) vouched = false;
    // The cut's holes (capture-mode.ts zeroChunks) cannot be read: a listed one is a zero chunk of the narrowed cut.
    const hole = new Uint8Array(count);
    for (const i of chunksOfRuns(zeroRuns)) hole[i] = 1;
    const listed = new Set(listsAll ? [] : disk.chunkIndexes);
    const zeros: [number, number][] = [];
    for (let i = 0; i < count; i++) {
      const isHole = hole[i] === 1;
      // Differs from the seed, or is listed as a hole by a cut that tracked the writes since the pre-hash.
      if (before.get(i) === seed.get(i) && (listsAll || !isHole)) continue;
      if (!isHole) {
        listed.add(i);
        continue;
      }
      const last = zeros.at(-1);
      if (last && last[0] + last[1] === i) last[1]++;
      else zeros.push([i, 1]);
    }
    const chunkIndexes = [...listed].sort((a, b) => a - b);
    disks.push({
      name: disk.name,
      sizeBytes: disk.sizeBytes,
      chunkIndexes,
      zeroChunks: zeros,
      read: (index) => disk.read(index),
      // Not the capture's changedRuns: they are against the pre-hash, not the seed (block digests find those).
      ...(disk.readRun ? { readRun: disk.readRun.bind(disk) } : {}),
    });
  }
  // Chunks read only at the pre-hash hold its instant: a cut that vouched for nothing is dated there.
  const capturedAt = vouched ? cut.capturedAt : prehash.capturedAt;
  return { capturedAt, disks, complete: () => cut.complete(), abandon: () => cut.abandon() };
}
