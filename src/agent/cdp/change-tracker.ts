import { RefugeError } from '../../core/errors.js';
import { BlockBitmap, TRACKING_BLOCK, TRACKING_REGION } from './block-bitmap.js';
import type { CowStore } from './cow-store.js';
import type { RegionLog } from './region-log.js';

/** Reads `target.length` bytes of the live disk at `offset` (the device under the tracker). */
export type ReadLive = (target: Buffer, offset: number) => void;

/**
 * Change tracking of one disk for cdp capture. Glossary:
 * - *dirty*: blocks written since the last cut.
 * - *cut*: the instant a recovery point represents. Cutting swaps the dirty bitmap for an empty one; the old one
 *   becomes the *frozen* set of the cut. It is synchronous, between two requests of the event loop, and the
 *   device under the tracker has no write half applied then (TrackedDevice.quiesce: new writes held for as long as
 *   the writes in flight take), so a cut sees each write wholly or not at all: that is write-order fidelity, with
 *   I/O paused for milliseconds at most.
 * - *copy-on-write*: until a frozen chunk has been read for shipping, the first write to each of its blocks first
 *   copies the block's cut-time bytes to the CowStore; reading the chunk overlays them, so the chunk read is the
 *   chunk at the cut however the VM writes meanwhile. Reading a chunk releases it: later writes cost nothing extra.
 * - *complete* / *abandon*: the cut's point was committed (its marks are dropped) or not (its marks return to
 *   dirty, so the next cut ships them).
 */
export class ChangeTracker {
  private dirty: BlockBitmap;
  private frozen: FrozenCut | undefined;
  private readonly scratch = Buffer.alloc(TRACKING_BLOCK);
  private readonly onNewRegion: ((region: number) => void) | undefined;

  constructor(
    readonly sizeBytes: number,
    private readonly cow: CowStore,
    private readonly regionLog: RegionLog | undefined,
    initialDirty?: BlockBitmap,
  ) {
    this.dirty = initialDirty ?? new BlockBitmap(sizeBytes);
    this.onNewRegion = regionLog ? (r) => regionLog.mark(r) : undefined;
  }

  /** Called before a write of [offset, offset + length) is applied to the live disk. */
  beforeWrite(offset: number, length: number, readLive: ReadLive): void {
    this.frozen?.preserve(offset, length, readLive, this.scratch);
    this.dirty.mark(offset, length, this.onNewRegion);
  }

  /** Every block may differ from the last point (tracking was lost): the next cut lists every chunk. */
  markAll(): void {
    this.dirty.markAll();
  }

  /** Bytes written since the last completed cut, still to ship (an estimate: marked blocks). */
  pendingBytes(): number {
    return this.dirty.markedBytes() + (this.frozen?.unreadBytes() ?? 0);
  }

  /** Cuts now. Only one cut may be open at a time; finish it with `complete` or `abandon`. */
  cut(chunkSize: number): FrozenCut {
    if (this.frozen) throw new RefugeError('internal', 'a cut is still open on this disk');
    this.frozen = new FrozenCut(this.dirty, chunkSize, this.sizeBytes, this.cow);
    this.dirty = new BlockBitmap(this.sizeBytes);
    return this.frozen;
  }

  /**
   * Leaves out of an open cut the chunks of `zeroRuns` (holes of the image, mapped after the cut) that no write
   * touched since the cut: they were holes at the cut too, so they are zero chunks, never read. A chunk written
   * since the cut may have been a hole then or not (its cut-time bytes are in the copy-on-write store): it stays
   * listed and is read. Synchronous, so no write lands between the check and the release.
   */
  excludeHoles(cut: FrozenCut, zeroRuns: readonly (readonly [number, number])[]): void {
    if (cut !== this.frozen) return;
    cut.excludeZero(zeroRuns, (start, end) => markedWithin(this.dirty, start, end));
  }

  complete(cut: FrozenCut): void {
    if (cut !== this.frozen) return;
    cut.finished = true;
    this.frozen = undefined;
    this.cow.clear();
    this.regionLog?.reset(this.dirty.markedRegions());
  }

  abandon(cut: FrozenCut): void {
    if (cut !== this.frozen) return;
    cut.finished = true;
    this.frozen = undefined;
    this.cow.clear();
    this.dirty.mergeFrom(cut.marks);
  }

  /** Everything not yet committed (dirty plus an open cut), e.g. to save at a clean shutdown. */
  uncommitted(): BlockBitmap {
    const all = new BlockBitmap(this.sizeBytes);
    all.mergeFrom(this.dirty);
    if (this.frozen) all.mergeFrom(this.frozen.marks);
    return all;
  }
}

/** Whether any block of [start, end) is marked; regions never written answer without a scan of their blocks. */
function markedWithin(bitmap: BlockBitmap, start: number, end: number): boolean {
  for (let r = Math.floor(start / TRACKING_REGION); r * TRACKING_REGION < end; r++) {
    if (bitmap.hasRegion(r)) return bitmap.any(start, end);
  }
  return false;
}

/** The frozen side of a cut: which chunks it covers, and their bytes at the cut instant. */
export class FrozenCut {
  /**
   * Per chunk: 1 once read for shipping, 2 a hole left out of the cut (excludeZero); either way released: later
   * writes to it need no copy. One byte per chunk: 1 MiB for 256 GiB at 256 KiB chunks.
   */
  private readonly released: Uint8Array;
  private readCount = 0;
  private readBytes = 0;
  private listed: number[] | undefined;
  private holes: [number, number][] = [];
  /**
   * Completed or abandoned: the copy-on-write store now serves the next cut, so a read still under way
   * (readChunks) must not overlay or release anything of it.
   */
  finished = false;

  /** Constant time: a cut is the write path's only pause, so it does nothing that grows with the disk or the writes. */
  constructor(
    readonly marks: BlockBitmap,
    readonly chunkSize: number,
    readonly sizeBytes: number,
    private readonly cow: CowStore,
  ) {
    this.released = new Uint8Array(Math.ceil(sizeBytes / chunkSize));
  }

  /** Whether chunk `i` holds marks (a chunk of at least a region: whether any of its regions was written). */
  private covers(i: number): boolean {
    const start = i * this.chunkSize;
    if (this.chunkSize < TRACKING_REGION) {
      // Asked for every chunk of a disk when a seed leaves out its holes (millions for 1 TiB): an unwritten region
      // answers at once, and a chunk whose first block is marked (a whole region marked) without scanning its blocks.
      if (!this.marks.hasRegion(Math.floor(start / TRACKING_REGION))) return false;
      return this.marks.any(start, start + TRACKING_BLOCK) || this.marks.any(start, start + this.chunkSize);
    }
    for (let r = start / TRACKING_REGION; r * TRACKING_REGION < Math.min(start + this.chunkSize, this.sizeBytes); r++) {
      if (this.marks.hasRegion(r)) return true;
    }
    return false;
  }

  /**
   * Indexes of the chunks this cut covers and reads, ascending; listed on first use (by the shipper, after the
   * cut). Regions in ascending order give chunks in ascending order, so a chunk spanning regions is seen only as
   * the last one listed: no set of every chunk (a seed of a 1 TiB disk covers millions).
   */
  get chunkIndexes(): readonly number[] {
    if (!this.listed) {
      const listed: number[] = [];
      for (const region of [...this.marks.markedRegions()].sort((a, b) => a - b)) {
        const start = region * TRACKING_REGION;
        const end = Math.min(start + TRACKING_REGION, this.sizeBytes);
        for (let i = Math.floor(start / this.chunkSize); i * this.chunkSize < end; i++) {
          if (i > (listed.at(-1) ?? -1) && this.released[i] !== 2 && this.covers(i)) listed.push(i);
        }
      }
      this.listed = listed;
    }
    return this.listed;
  }

  /** Runs `[first, count]` of covered chunks left out as holes (zero at the cut, never read). */
  get zeroChunks(): readonly (readonly [number, number])[] {
    return this.holes;
  }

  /** See ChangeTracker.excludeHoles; `writtenSince(start, end)` tells whether bytes were written since the cut. */
  excludeZero(zeroRuns: readonly (readonly [number, number])[], writtenSince: (start: number, end: number) => boolean): void {
    for (const [first, count] of zeroRuns) {
      for (let i = first; i < first + count; i++) {
        const start = i * this.chunkSize;
        if (this.released[i] !== 0 || !this.covers(i) || writtenSince(start, Math.min(start + this.chunkSize, this.sizeBytes))) continue;
        this.released[i] = 2;
        const last = this.holes.at(-1);
        if (last && last[0] + last[1] === i) last[1]++;
        else this.holes.push([i, 1]);
      }
    }
    this.listed = undefined;
  }

  /**
   * Bytes of listed chunks not read yet (what shipping still has to read). Until the chunks are listed, an estimate
   * from the marked blocks: heartbeats ask every few seconds, also while a seed's cut is still leaving out the holes
   * of its disks, and listing then would build the list of every chunk of a disk (millions for 1 TiB: ~80 MiB of
   * garbage for 4 disks, P11 in docs/benchmarks.md) only to drop it.
   */
  unreadBytes(): number {
    if (!this.listed) {
      const holeBytes = this.holes.reduce((n, [, count]) => n + count * this.chunkSize, 0);
      return Math.max(0, this.marks.markedBytes() - holeBytes - this.readBytes);
    }
    const listedBytes = this.listed.reduce((n, i) => n + Math.min(this.chunkSize, this.sizeBytes - i * this.chunkSize), 0);
    return listedBytes - this.readBytes;
  }

  /** Copy-on-write: keeps the cut-time bytes of the blocks of [offset, offset + length) in unread frozen chunks. */
  preserve(offset: number, length: number, readLive: ReadLive, scratch: Buffer): void {
    if (this.listed && this.readCount === this.listed.length) return; // all read: nothing left to protect
    const first = Math.floor(offset / TRACKING_BLOCK);
    const last = Math.floor((offset + length - 1) / TRACKING_BLOCK);
    let chunk = -1;
    let protect = false;
    for (let b = first; b <= last; b++) {
      const at = b * TRACKING_BLOCK;
      const c = Math.floor(at / this.chunkSize);
      if (c !== chunk) {
        chunk = c;
        protect = this.released[c] === 0 && this.covers(c);
      }
      if (!protect || this.cow.has(b)) continue;
      const block = scratch.subarray(0, Math.min(TRACKING_BLOCK, this.sizeBytes - at));
      readLive(block, at);
      this.cow.save(b, block);
    }
  }

  /**
   * The bytes of frozen chunk `index` as they were at the cut, in `into` (exactly the chunk's length) or a new buffer.
   * Reading releases the chunk: from now on writes to it need no copy. Synchronous, so no write can land between
   * the live read and the overlay.
   */
  readChunk(index: number, readLive: ReadLive, into?: Buffer): Buffer {
    const length = this.unreadLength(index);
    if (into && into.length !== length) throw new RefugeError('internal', `chunk ${index} is ${length} bytes, not ${into.length}`);
    const data = into ?? Buffer.allocUnsafe(length);
    readLive(data, index * this.chunkSize);
    this.overlayAndRelease(index, data);
    return data;
  }

  /**
   * Frozen chunks `[first, first + count)` as they were at the cut, in `into`, with their live bytes read by
   * `readLive` asynchronously (off the event loop, which goes on serving the VM's writes meanwhile). Still exact: a
   * write landing on these chunks before they are released keeps its block's cut-time bytes in the copy-on-write
   * store first (`preserve`), and the overlay below, after the live read, puts those back over whatever the read
   * saw of the write.
   */
  async readChunks(first: number, count: number, into: Buffer, readLive: (target: Buffer, offset: number) => Promise<void>): Promise<void> {
    let length = 0;
    for (let i = first; i < first + count; i++) length += this.unreadLength(i);
    if (into.length !== length) throw new RefugeError('internal', `chunks ${first}+${count} are ${length} bytes, not ${into.length}`);
    await readLive(into, first * this.chunkSize);
    if (this.finished) throw new RefugeError('cancelled', `the cut was finished while chunks ${first}+${count} were read`);
    for (let n = 0; n < count; n++) {
      const at = n * this.chunkSize;
      this.unreadLength(first + n); // still unread: no other reader took it meanwhile
      this.overlayAndRelease(first + n, into.subarray(at, Math.min(at + this.chunkSize, into.length)));
    }
  }

  /**
   * Only the byte `ranges` (relative to the chunk's start) of frozen chunk `index` as they were at the cut, into
   * their places in `into` (the chunk's length; its other bytes are left as they were, except blocks preserved by
   * copy-on-write, which the overlay writes too); the chunk is released as a whole read releases it. For a chunk
   * whose name follows from the leaves written and remembered digests (store format 3): the rest is never read.
   */
  async readRanges(index: number, ranges: readonly (readonly [number, number])[], into: Buffer, readLive: (target: Buffer, offset: number) => Promise<void>): Promise<void> {
    const length = this.unreadLength(index);
    if (into.length !== length) throw new RefugeError('internal', `chunk ${index} is ${length} bytes, not ${into.length}`);
    const start = index * this.chunkSize;
    await Promise.all(ranges.map(([o, l]) => readLive(into.subarray(o, Math.min(o + l, length)), start + o)));
    if (this.finished) throw new RefugeError('cancelled', `the cut was finished while chunk ${index} was read`);
    this.unreadLength(index);
    this.overlayAndRelease(index, into); // done with, as a whole read is (what pending bytes count)
  }

  /** The length of chunk `index`, which must be a frozen chunk of this cut not read yet. */
  private unreadLength(index: number): number {
    if (this.released[index] !== 0 || !this.covers(index)) {
      // After the first read later writes are not preserved, so a second read could mix in bytes from after the cut.
      throw new RefugeError('internal', `chunk ${index} is not an unread chunk of this cut`);
    }
    const start = index * this.chunkSize;
    return Math.min(this.chunkSize, this.sizeBytes - start);
  }

  /** Puts the preserved cut-time blocks over `data` (chunk `index` as read live) and releases the chunk. */
  private overlayAndRelease(index: number, data: Buffer): void {
    const firstBlock = (index * this.chunkSize) / TRACKING_BLOCK;
    const blocks = Math.ceil(data.length / TRACKING_BLOCK);
    this.cow.overlay(data, firstBlock, blocks);
    this.cow.release(firstBlock, blocks);
    this.released[index] = 1;
    this.readCount++;
    this.readBytes += data.length;
  }

  /** Byte runs of chunk `index` written since the previous cut, relative to the chunk's start. */
  changedRuns(index: number): [number, number][] {
    const start = index * this.chunkSize;
    return this.marks.runs(start, start + this.chunkSize).map(([o, l]) => [o - start, l]);
  }
}
