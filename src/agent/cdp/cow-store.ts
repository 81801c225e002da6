import { closeSync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { rmSync } from 'node:fs';
import { TRACKING_BLOCK } from './block-bitmap.js';

/**
 * Where copy-on-write keeps the cut-time bytes of blocks the VM overwrites while a cut is being shipped: a scratch
 * file in the agent's state folder (page cache in practice), indexed in memory by block number. A file, not memory,
 * so a VM rewriting its disk while a slow link drains a large cut cannot grow the agent's memory; the index costs a
 * few dozen bytes per preserved block. Emptied (truncated) when the cut is finished.
 *
 * Synchronous, like the device it serves: a block is preserved before the write that overwrites it is applied.
 */
export class CowStore {
  private readonly fd: number;
  private readonly index = new Map<number, number>();
  private end = 0;

  constructor(private readonly path: string) {
    this.fd = openSync(path, 'w+', 0o600);
  }

  get blocks(): number {
    return this.index.size;
  }

  has(block: number): boolean {
    return this.index.has(block);
  }

  /** Keeps `data` (the block's bytes at the cut; the last block of a disk may be short). First save wins. */
  save(block: number, data: Buffer): void {
    if (this.index.has(block)) return;
    let done = 0;
    while (done < data.length) done += writeSync(this.fd, data, done, data.length - done, this.end + done);
    this.index.set(block, this.end);
    this.end += TRACKING_BLOCK;
  }

  /** Copies the preserved blocks among [firstBlock, firstBlock + count) over `target` (which starts at firstBlock). */
  overlay(target: Buffer, firstBlock: number, count: number): void {
    if (this.index.size === 0) return;
    for (let b = firstBlock; b < firstBlock + count; b++) {
      const at = this.index.get(b);
      if (at === undefined) continue;
      const into = (b - firstBlock) * TRACKING_BLOCK;
      const length = Math.min(TRACKING_BLOCK, target.length - into);
      if (length > 0) readSync(this.fd, target, into, length, at);
    }
  }

  /** Forgets the preserved blocks among [firstBlock, firstBlock + count) (their chunk has been read). */
  release(firstBlock: number, count: number): void {
    if (this.index.size === 0) return;
    for (let b = firstBlock; b < firstBlock + count; b++) this.index.delete(b);
  }

  /** Drops everything (the cut is finished) and gives the space back. */
  clear(): void {
    this.index.clear();
    this.end = 0;
    ftruncateSync(this.fd, 0);
  }

  close(): void {
    closeSync(this.fd);
    rmSync(this.path, { force: true });
  }
}
