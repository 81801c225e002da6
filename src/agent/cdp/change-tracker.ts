import { RefugeError } from '../../core/errors.js';
import { BlockBitmap, TRACKING_BLOCK } from './block-bitmap.js';
import type { CowStore } from './cow-store.js';
import type { RegionLog } from './region-log.js';

/** Reads `target.length` bytes of the live disk at `offset` (the device under the tracker). */
export type ReadLive = (target: Buffer, offset: number) => void;

/**
 * Change tracking of one disk for cdp capture. Glossary:
 * - *dirty*: blocks written since the last cut.
 * - *cut*: the instant a recovery point represents. Cutting swaps the dirty bitmap for an empty one; the old one
 *   becomes the *frozen* set of the cut. It is synchronous, between two requests of the event loop, and every
 *   write is applied synchronously (see nbd's BlockDevice contract), so a cut sees each write wholly or not at all:
 *   that is write-order fidelity, with no I/O paused at all.
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

  constructor(
    readonly sizeBytes: number,
    private readonly cow: CowStore,
    private readonly regionLog: RegionLog | undefined,
    initialDirty?: BlockBitmap,
  ) {
    this.dirty = initialDirty ?? new BlockBitmap(sizeBytes);
  }

  /** Called before a write of [offset, offset + length) is applied to the live disk. */
  beforeWrite(offset: number, length: number, readLive: ReadLive): void {
    this.frozen?.preserve(offset, length, readLive, this.scratch);
    this.dirty.mark(offset, length, this.regionLog ? (r) => this.regionLog?.mark(r) : undefined);
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

  complete(cut: FrozenCut): void {
    if (cut !== this.frozen) return;
    this.frozen = undefined;
    this.cow.clear();
    this.regionLog?.reset(this.dirty.markedRegions());
  }

  abandon(cut: FrozenCut): void {
    if (cut !== this.frozen) return;
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

/** The frozen side of a cut: which chunks it covers, and their bytes at the cut instant. */
export class FrozenCut {
  readonly chunkIndexes: number[];
  /** Per chunk: 1 while frozen and not yet read (writes to it copy blocks first), else 0. */
  private readonly pending: Uint8Array;
  private unread = 0;

  constructor(
    readonly marks: BlockBitmap,
    readonly chunkSize: number,
    readonly sizeBytes: number,
    private readonly cow: CowStore,
  ) {
    const count = Math.ceil(sizeBytes / chunkSize);
    this.pending = new Uint8Array(count);
    this.chunkIndexes = [];
    for (let i = 0; i < count; i++) {
      if (!marks.any(i * chunkSize, (i + 1) * chunkSize)) continue;
      this.chunkIndexes.push(i);
      this.pending[i] = 1;
      this.unread += Math.min(chunkSize, sizeBytes - i * chunkSize);
    }
  }

  unreadBytes(): number {
    return this.unread;
  }

  /** Copy-on-write: keeps the cut-time bytes of the blocks of [offset, offset + length) in unread frozen chunks. */
  preserve(offset: number, length: number, readLive: ReadLive, scratch: Buffer): void {
    if (this.unread === 0) return;
    const first = Math.floor(offset / TRACKING_BLOCK);
    const last = Math.floor((offset + length - 1) / TRACKING_BLOCK);
    for (let b = first; b <= last; b++) {
      const at = b * TRACKING_BLOCK;
      if (this.pending[Math.floor(at / this.chunkSize)] !== 1 || this.cow.has(b)) continue;
      const block = scratch.subarray(0, Math.min(TRACKING_BLOCK, this.sizeBytes - at));
      readLive(block, at);
      this.cow.save(b, block);
    }
  }

  /**
   * The bytes of frozen chunk `index` as they were at the cut. Reading releases the chunk: from now on writes to it
   * need no copy. Synchronous, so no write can land between the live read and the overlay.
   */
  readChunk(index: number, readLive: ReadLive): Buffer {
    if (this.pending[index] !== 1) {
      // After the first read later writes are not preserved, so a second read could mix in bytes from after the cut.
      throw new RefugeError('internal', `chunk ${index} is not an unread chunk of this cut`);
    }
    const start = index * this.chunkSize;
    const data = Buffer.allocUnsafe(Math.min(this.chunkSize, this.sizeBytes - start));
    readLive(data, start);
    const firstBlock = start / TRACKING_BLOCK;
    const blocks = Math.ceil(data.length / TRACKING_BLOCK);
    this.cow.overlay(data, firstBlock, blocks);
    this.cow.release(firstBlock, blocks);
    this.pending[index] = 0;
    this.unread -= data.length;
    return data;
  }

  /** Byte runs of chunk `index` written since the previous cut, relative to the chunk's start. */
  changedRuns(index: number): [number, number][] {
    const start = index * this.chunkSize;
    return this.marks.runs(start, start + this.chunkSize).map(([o, l]) => [o - start, l]);
  }
}
