/**
 * Collects the pieces a socket delivers and hands out exact-length messages. A message that lies inside one piece
 * is returned as a view of it (no copy); one that spans pieces is copied once, when all of it has arrived, never
 * through a quadratic series of concatenations.
 */
export class StreamReader {
  private pieces: Buffer[] = [];
  private head = 0;
  private total = 0;

  get available(): number {
    return this.total;
  }

  push(piece: Buffer): void {
    if (piece.length === 0) return;
    this.pieces.push(piece);
    this.total += piece.length;
  }

  /** The next `n` bytes, consumed, or undefined (nothing consumed) if fewer have arrived. */
  read(n: number): Buffer | undefined {
    if (n > this.total) return undefined;
    if (n === 0) return Buffer.alloc(0);
    const first = this.pieces[0] as Buffer;
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.readInto(out, 0, n);
    return out;
  }

  /** Copies up to `max` of the next bytes into `target` at `at`, consumed; returns how many it copied. */
  readInto(target: Buffer, at: number, max: number): number {
    let done = 0;
    while (done < max && this.total > 0) {
      const piece = this.pieces[0] as Buffer;
      const take = Math.min(max - done, piece.length - this.head);
      piece.copy(target, at + done, this.head, this.head + take);
      this.advance(take);
      done += take;
    }
    return done;
  }

  /**
   * Copies what is left unread into memory of its own: the pieces pushed may be views of a buffer that the next
   * socket read overwrites (read-in-place.ts). What is left is usually a few bytes of a header.
   */
  own(): void {
    if (this.total === 0) return;
    const rest = Buffer.allocUnsafe(this.total);
    this.readInto(rest, 0, this.total);
    this.push(rest);
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    const take = Math.min(n, this.total);
    let left = take;
    while (left > 0) {
      const piece = this.pieces[0] as Buffer;
      const step = Math.min(left, piece.length - this.head);
      this.advance(step);
      left -= step;
    }
    return take;
  }

  private advance(n: number): void {
    this.head += n;
    this.total -= n;
    const first = this.pieces[0];
    if (first && this.head === first.length) {
      this.pieces.shift();
      this.head = 0;
    }
  }
}
