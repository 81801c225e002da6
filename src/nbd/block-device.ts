import { closeSync, fdatasync, fdatasyncSync, fstatSync, openSync, read, readSync, writeSync, writev, writevSync } from 'node:fs';
import { promisify } from 'node:util';
import { RefugeError } from '../core/errors.js';

/**
 * What an NBD export serves: a range of bytes that can be read, written and flushed.
 *
 * Contract (the NBD server relies on it; every implementation keeps it):
 * - The server has validated every range before calling: `offset + length <= sizeBytes`, length > 0.
 * - A method may complete synchronously (return a value) or asynchronously (return a promise). A synchronous
 *   write is applied completely before the method returns. An asynchronous write is applied while the event loop
 *   goes on, so a layer that needs every write either fully applied or not started (the agent's change tracking,
 *   to cut a consistent point) holds new writes and waits for those in flight (`FileBlockDevice.settled`); the wait
 *   lasts as long as the writes in flight, milliseconds.
 * - `write`/`writeZeroes` with `fua` return only once the data is durable; `flush` makes every write completed
 *   before it durable.
 * - `trim` is advisory (the bytes may keep their value); it never fails for a valid range.
 * - Failures throw (or reject with) an error carrying a Node `code` (ENOSPC, EIO, ...), mapped to an NBD errno.
 * - `write`'s `data` belongs to the server again once the call has returned (synchronous) or settled
 *   (asynchronous): the server reads the next payloads into the same memory (payload-pool.ts). A device that
 *   keeps bytes beyond that copies them.
 */
export interface BlockDevice {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** Reads `length` bytes at `offset` into `target` (exactly `length` bytes long). */
  read(target: Buffer, offset: number): void | Promise<void>;
  /** Writes `data`, given as the pieces it arrived in (their lengths add up to the request's length). */
  write(data: readonly Buffer[], offset: number, fua: boolean): void | Promise<void>;
  writeZeroes(offset: number, length: number, fua: boolean): void | Promise<void>;
  trim(offset: number, length: number): void | Promise<void>;
  flush(): void | Promise<void>;
}

const ZERO_PIECE = 1024 * 1024;
let zeroPiece: Buffer | undefined;

/**
 * Writes of at least this many bytes run on libuv's thread pool instead of the event loop. A large write spends
 * most of its time copying into the page cache; done on the loop, that copy and the socket reads of the next
 * request take turns on one core, and the 1 MiB sequential bandwidth stayed at ~80% of nbdkit's (which writes
 * from threads). Done on the pool, the two overlap (P4 in docs/benchmarks.md). Small writes (a VM's 4 KiB random
 * writes) stay synchronous: for them the round trip through the pool costs more than the write.
 */
export const ASYNC_WRITE_MIN_BYTES = 128 * 1024;

const writevAsync = promisify(writev);
const fdatasyncAsync = promisify(fdatasync);
const readAsync = promisify(read);

/**
 * A raw disk image file (or block device) served with positioned I/O on one descriptor: synchronous for reads and
 * small writes (for the small requests a VM sends that costs less than a round trip through libuv's thread pool),
 * asynchronous for writes of ASYNC_WRITE_MIN_BYTES or more. Writes land in the page cache; FUA and FLUSH call
 * fdatasync.
 */
export class FileBlockDevice implements BlockDevice {
  readonly sizeBytes: number;
  private fd: number | undefined;
  /** Asynchronous writes not yet finished, and who waits for there to be none. */
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  private constructor(
    fd: number,
    readonly path: string,
    readonly readOnly: boolean,
  ) {
    this.fd = fd;
    const st = fstatSync(fd);
    if (!st.isFile()) throw new RefugeError('invalid_argument', `${path} is not a regular file; serve disk image files`);
    this.sizeBytes = st.size;
  }

  static open(path: string, options: { readOnly?: boolean } = {}): FileBlockDevice {
    let fd: number;
    try {
      fd = openSync(path, options.readOnly ? 'r' : 'r+');
    } catch (err) {
      throw RefugeError.wrap(err, `cannot open disk image ${path}`, 'failed_precondition');
    }
    try {
      return new FileBlockDevice(fd, path, options.readOnly === true);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  private get descriptor(): number {
    if (this.fd === undefined) throw Object.assign(new Error(`disk image ${this.path} is closed`), { code: 'ESHUTDOWN' });
    return this.fd;
  }

  /**
   * As `read`, on libuv's thread pool: for a reader that must not hold the event loop while it copies megabytes (the
   * agent's shipper reading a cut's chunks while the same loop serves the VM's writes).
   */
  async readAsync(target: Buffer, offset: number): Promise<void> {
    let done = 0;
    while (done < target.length) {
      const n = (await readAsync(this.descriptor, target, done, target.length - done, offset + done)).bytesRead;
      if (n === 0) {
        target.fill(0, done);
        return;
      }
      done += n;
    }
  }

  read(target: Buffer, offset: number): void {
    let done = 0;
    while (done < target.length) {
      const n = readSync(this.descriptor, target, done, target.length - done, offset + done);
      if (n === 0) {
        target.fill(0, done); // a file shorter than its stat size (truncated behind our back) reads as zeros
        return;
      }
      done += n;
    }
  }

  write(data: readonly Buffer[], offset: number, fua: boolean): void | Promise<void> {
    let length = 0;
    for (const d of data) length += d.length;
    if (length >= ASYNC_WRITE_MIN_BYTES) return this.writeInPool(data, offset, fua);
    this.writeNow(data, offset);
    if (fua) fdatasyncSync(this.descriptor);
  }

  private writeNow(data: readonly Buffer[], offset: number): void {
    if (data.length === 1) {
      const d = data[0] as Buffer;
      let done = 0;
      while (done < d.length) done += writeSync(this.descriptor, d, done, d.length - done, offset + done);
    } else {
      // One positioned gather write for a payload that arrived in many socket reads: no copy into one buffer.
      const pieces = [...data];
      let at = offset;
      while (pieces.length > 0) at += consumed(pieces, writevSync(this.descriptor, pieces, at));
    }
  }

  /** Asynchronous writes started and not yet finished. */
  get writesInFlight(): number {
    return this.inFlight;
  }

  /** Resolves once no asynchronous write is running (at once if none is). */
  settled(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async writeInPool(data: readonly Buffer[], offset: number, fua: boolean): Promise<void> {
    const fd = this.descriptor;
    this.inFlight++;
    try {
      const pieces = [...data];
      let at = offset;
      while (pieces.length > 0) at += consumed(pieces, (await writevAsync(fd, pieces, at)).bytesWritten);
      if (fua) await fdatasyncAsync(fd);
    } finally {
      if (--this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  writeZeroes(offset: number, length: number, fua: boolean): void {
    zeroPiece ??= Buffer.alloc(ZERO_PIECE);
    for (let at = 0; at < length; at += ZERO_PIECE) {
      const n = Math.min(ZERO_PIECE, length - at);
      this.writeNow([zeroPiece.subarray(0, n)], offset + at);
    }
    if (fua) fdatasyncSync(this.descriptor);
  }

  trim(): void {
    // Advisory: keeping the bytes is a valid trim, and it needs no change tracking.
  }

  flush(): void {
    fdatasyncSync(this.descriptor);
  }

  /**
   * Closes the image: new calls fail with ESHUTDOWN at once; a write still on the thread pool finishes on the
   * descriptor first (closing under it could send its bytes to whatever file reuses the number).
   */
  close(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    if (this.inFlight === 0) closeSync(fd);
    else void this.settled().then(() => closeSync(fd));
  }
}

/** Drops the first `n` bytes of `pieces` (a partial gather write's progress) in place; returns `n`. */
function consumed(pieces: Buffer[], n: number): number {
  let left = n;
  while (pieces.length > 0 && left >= (pieces[0] as Buffer).length) left -= (pieces.shift() as Buffer).length;
  if (left > 0) pieces[0] = (pieces[0] as Buffer).subarray(left);
  return n;
}
