import type { Run } from '../../protocol/chunk-encoding.js';

/**
 * A capture mode turns a machine's disks into *cuts*: crash-consistent images of every disk at one instant, read
 * chunk by chunk for shipping. The agent's shipping, hashing, deduplication and commit are written once over this
 * interface; a mode only decides how an instant is frozen and which chunks may have changed.
 *
 * - `cdp` (cdp-capture.ts): the agent serves the disks to the VM over NBD, sees every write, and cuts by
 *   copy-on-write without pausing the VM; a cut lists only the chunks written since the previous one.
 * - `scan` (scan-capture.ts): for images and devices the agent cannot sit in front of; an optional freeze hook
 *   holds the disks still while every chunk is read.
 *
 * Contract (every mode passes the shared suite in test/unit/agent/capture-contract.ts):
 * 1. One instant: every chunk read through a cut holds the bytes of the cut's instant, on every disk of the
 *    machine, however the disks are written while the cut is read.
 * 2. Completeness: a cut lists every chunk that may differ from the last *completed* cut (in `chunkIndexes`, or in
 *    `zeroChunks` when the mode knows it is zero without reading it). It may list more (an
 *    unchanged chunk costs reading and hashing, never shipping). With `everyChunk`, and whenever the mode has no
 *    completed cut it can vouch for (first run, tracking lost), it lists every chunk.
 * 3. One cut at a time: finish a cut with `complete()` once its point is committed, or `abandon()` if it was not;
 *    an abandoned cut's chunks are listed again by the next cut.
 * 4. Each chunk of a cut is read at most once, and in any order; the reader keeps the bytes until they are shipped.
 * 5. `changedRuns`, when a mode offers it, names the byte runs of a chunk outside of which the chunk equals its bytes
 *    at the last completed cut (what a patch upload needs).
 * 6. `start` before the first cut and `stop` at the end; `stop` leaves what the mode needs to resume without
 *    listing every chunk again (a clean shutdown).
 *
 * A re-protect's pre-hash (../prehash.ts) is a cut of its own, read whole and completed without a point; the next cut
 * is narrowed to the chunks that differ from the seed, so across the two cuts a chunk may be read twice.
 */
export interface CaptureMode {
  readonly kind: 'cdp' | 'scan';
  start(): Promise<void>;
  cut(options: CutOptions): Promise<Cut>;
  /**
   * Holds every disk's writes (none applied nor acknowledged) until the returned release is called; a cut taken
   * meanwhile is at the hold's instant. Consistency-group barriers use it so that several machines are held at
   * once before any of them cuts. Modes that cannot hold writes leave it out (their group cuts are only
   * as simultaneous as the barrier's answer).
   */
  hold?(): Promise<() => void>;
  /** Bytes written but not yet in a completed cut (0 when the mode cannot know). */
  pendingBytes(): number;
  stop(): Promise<void>;
}

export interface CutOptions {
  /** Chunk size of the target store: chunk `i` of a disk is bytes [i * chunkSize, (i + 1) * chunkSize). */
  chunkSize: number;
  /** List every chunk (the agent does not know the last point's hashes). */
  everyChunk: boolean;
}

export interface Cut {
  readonly capturedAt: Date;
  readonly disks: readonly CutDisk[];
  complete(): Promise<void>;
  abandon(): Promise<void>;
}

export interface CutDisk {
  readonly name: string;
  readonly sizeBytes: number;
  /** Indexes of the chunks this cut lists, ascending. */
  readonly chunkIndexes: readonly number[];
  /**
   * Optional: runs `[first, count]` of chunks also listed, known to be all zeros at the cut without reading them
   * (the holes of a sparse image, extents.ts); never among `chunkIndexes`. They count as listed for rule 2, so a
   * seed of a sparse 1 TiB image reads its data, not its size.
   */
  readonly zeroChunks?: readonly (readonly [number, number])[];
  /** The chunk's bytes at the cut (the last chunk of a disk may be short). */
  read(index: number): Promise<Buffer>;
  /**
   * Optional: the bytes of `count` consecutive listed chunks from `first`, read into `into` (exactly their length)
   * in as few reads as the mode can; each counts as read (rule 4). A scan reads a whole disk this way, with large
   * reads and no buffer per chunk.
   */
  readRun?(first: number, count: number, into: Uint8Array): Promise<void>;
  changedRuns?(index: number): Run[];
  /**
   * Optional, with `changedRuns`: reads only the byte `ranges` of listed chunk `index` (relative to its start) at the
   * cut into their places in `into` (the chunk's length); the chunk counts as read (rule 4). Where a chunk's name
   * follows from the ranges written (store format 3's leaf digests, ../leaf-digests.ts), the rest is never read.
   */
  readRanges?(index: number, ranges: readonly (readonly [number, number])[], into: Buffer): Promise<void>;
}

/** How many chunks a cut lists of a disk: those to read plus those it knows are zero (rule 2 counts both). */
export function listedChunkCount(disk: Pick<CutDisk, 'chunkIndexes' | 'zeroChunks'>): number {
  return disk.chunkIndexes.length + (disk.zeroChunks ?? []).reduce((n, [, c]) => n + c, 0);
}
