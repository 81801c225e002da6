import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync, writevSync } from 'node:fs';
import { RefugeError } from '../core/errors.js';

/**
 * What an NBD export serves: a range of bytes that can be read, written and flushed.
 *
 * Contract (the NBD server relies on it; every implementation keeps it):
 * - The server has validated every range before calling: `offset + length <= sizeBytes`, length > 0.
 * - A method may complete synchronously (return a value) or asynchronously (return a promise). A synchronous
 *   write is applied completely before the method returns, so between two calls of the event loop every write is
 *   either fully applied or not started: capture layers (the agent's change tracking) rely on this to cut a
 *   consistent point without pausing I/O.
 * - `write`/`writeZeroes` with `fua` return only once the data is durable; `flush` makes every write completed
 *   before it durable.
 * - `trim` is advisory (the bytes may keep their value); it never fails for a valid range.
 * - Failures throw (or reject with) an error carrying a Node `code` (ENOSPC, EIO, ...), mapped to an NBD errno.
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
 * A raw disk image file (or block device) served with synchronous positioned I/O on one descriptor. Synchronous
 * calls keep every write atomic with respect to the event loop (see the contract) and, for the small requests a
 * VM sends, cost less than a round trip through libuv's thread pool. Writes land in the page cache; FUA and FLUSH
 * call fdatasync.
 */
export class FileBlockDevice implements BlockDevice {
  readonly sizeBytes: number;
  private fd: number | undefined;

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

  write(data: readonly Buffer[], offset: number, fua: boolean): void {
    if (data.length === 1) {
      const d = data[0] as Buffer;
      let done = 0;
      while (done < d.length) done += writeSync(this.descriptor, d, done, d.length - done, offset + done);
    } else {
      // One positioned gather write for a payload that arrived in many socket reads: no copy into one buffer.
      const pieces = [...data];
      let at = offset;
      while (pieces.length > 0) {
        let n = writevSync(this.descriptor, pieces, at);
        at += n;
        while (pieces.length > 0 && n >= (pieces[0] as Buffer).length) n -= (pieces.shift() as Buffer).length;
        if (n > 0) pieces[0] = (pieces[0] as Buffer).subarray(n);
      }
    }
    if (fua) fdatasyncSync(this.descriptor);
  }

  writeZeroes(offset: number, length: number, fua: boolean): void {
    zeroPiece ??= Buffer.alloc(ZERO_PIECE);
    for (let at = 0; at < length; at += ZERO_PIECE) {
      const n = Math.min(ZERO_PIECE, length - at);
      this.write([zeroPiece.subarray(0, n)], offset + at, false);
    }
    if (fua) fdatasyncSync(this.descriptor);
  }

  trim(): void {
    // Advisory: keeping the bytes is a valid trim, and it needs no change tracking.
  }

  flush(): void {
    fdatasyncSync(this.descriptor);
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
