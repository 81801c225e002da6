/**
 * Collects the pieces a socket delivers and hands out exact-length messages. A message that lies inside one piece
 * is returned as a view of it (no copy); one that spans pieces is copied once, when all of it has arrived, so a
 * 1 MiB write arriving in 64 KiB pieces costs one copy, never a quadratic series of concatenations.
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
    let filled = 0;
    while (filled < n) {
      const piece = this.pieces[0] as Buffer;
      const take = Math.min(n - filled, piece.length - this.head);
      piece.copy(out, filled, this.head, this.head + take);
      filled += take;
      this.advance(take);
    }
    return out;
  }

  /** The next `n` bytes as views of the pieces they arrived in (no copy), consumed; undefined if fewer have arrived. */
  readPieces(n: number): Buffer[] | undefined {
    if (n > this.total) return undefined;
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const piece = this.pieces[0] as Buffer;
      const take = Math.min(left, piece.length - this.head);
      out.push(piece.subarray(this.head, this.head + take));
      this.advance(take);
      left -= take;
    }
    return out;
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
