import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { LEAF_SIZE, nameFromLeafDigests, zeroDigests } from '../store/chunks.js';

/**
 * The leaf digests of a disk as of the agent's last cut, for stores of format 3 (leaf-digest names,
 * docs/design-delta-points.md, stage 4): a chunk's new name then follows from the leaves a cut wrote, read and
 * hashed, and the digests of its other leaves, read from here, so a cdp point reads and hashes what was written,
 * not every chunk it touched whole (P5 in docs/benchmarks.md: ~2 GB a point at 20 MB/s of 8 KiB writes).
 *
 * File `leaf-digests/<disk>.bin` in the state folder: 32 bytes per 16 KiB leaf of the disk, leaf `n` at `n * 32`
 * (independent of the chunk size), sparse (a leaf never written here reads as zeros). It is a cache and is never
 * trusted: a chunk's digests are used only when they give the name the agent remembers for that chunk in its last
 * committed point (`forChunk`), so a crash, a failed point or a lost file costs reading that chunk whole, never a
 * wrong name. Hence no fsync and no ordering with the commit.
 */
export class LeafDigestFile {
  private constructor(private readonly file: FileHandle) {}

  static async open(stateDir: string, disk: string): Promise<LeafDigestFile> {
    const dir = join(stateDir, 'leaf-digests');
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${encodeURIComponent(disk)}.bin`);
    const file = await open(path, 'a+').then(async (f) => {
      await f.close();
      return open(path, 'r+'); // created if missing; r+ so positioned writes land where asked (a+ appends)
    });
    return new LeafDigestFile(file);
  }

  /**
   * The digests of chunk `index` (`length` bytes, chunks of `chunkSize`), if they name it `name` (null: a zero chunk,
   * whose digests need no file); undefined when they do not (unknown, stale, damaged): read the chunk whole then.
   */
  async forChunk(index: number, chunkSize: number, length: number, name: string | null): Promise<Buffer | undefined> {
    if (name === null) return Buffer.from(zeroDigests(length));
    return trusted(await this.readLeaves((index * chunkSize) / LEAF_SIZE, Math.ceil(length / LEAF_SIZE)), length, name);
  }

  /**
   * The digests of leaves `[first, first + count)`, one read (zeros where never written or past the file's end);
   * trust a chunk's only as `trusted` says.
   */
  async readLeaves(first: number, count: number): Promise<Buffer> {
    const out = Buffer.alloc(count * 32);
    await this.file.read(out, 0, out.length, first * 32).catch(() => undefined);
    return out;
  }

  /**
   * Records the digests of leaves from `first` on. A failed write (a full disk) is not the point's failure: those
   * chunks' digests then do not name them, and they are read whole next time.
   */
  async writeLeaves(first: number, digests: Uint8Array): Promise<void> {
    await this.file.write(digests, 0, digests.length, first * 32).catch(() => undefined);
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

/** `digests` (of a chunk of `length` bytes, from the file) when they give the name the agent remembers for it. */
export const trusted = (digests: Buffer, length: number, name: string): Buffer | undefined => (nameFromLeafDigests(length, digests) === name ? digests : undefined);

/** The digests of a zero chunk (kept in the store, whose rebuilds need them too). */
export { zeroDigests };

/**
 * The leaves `runs` (byte runs of a chunk of `length` bytes) touch, as byte ranges of whole leaves, merged: what a
 * cut must read of the chunk to hash the leaves written again.
 */
export function leafRanges(runs: readonly (readonly [number, number])[], length: number): [number, number][] {
  const out: [number, number][] = [];
  for (const [offset, size] of [...runs].sort((a, b) => a[0] - b[0])) {
    if (size <= 0) continue;
    const from = Math.floor(offset / LEAF_SIZE) * LEAF_SIZE;
    const to = Math.min(length, Math.ceil((offset + size) / LEAF_SIZE) * LEAF_SIZE);
    const last = out.at(-1);
    if (last && from <= last[0] + last[1]) last[1] = Math.max(last[1], to - last[0]);
    else out.push([from, to - from]);
  }
  return out;
}

/**
 * Digests of chunks read whole (a seed, a resync, fallbacks), written as runs of consecutive chunks, one write per
 * run of up to 1 MiB of digests: a seed of a large disk reads millions of chunks, and one awaited write each cost
 * a round trip to libuv's pool per chunk.
 */
export class DigestWriter {
  private first = -1;
  private next = -1;
  private parts: Buffer[] = [];
  private bytes = 0;

  constructor(
    private readonly file: LeafDigestFile,
    private readonly chunkSize: number,
  ) {}

  /** Chunk `index`'s digests (copied); written with its neighbours, or at `flush`. */
  async add(index: number, digests: Uint8Array): Promise<void> {
    if (index !== this.next || this.bytes >= 1024 * 1024) await this.flush();
    if (this.parts.length === 0) this.first = index;
    this.parts.push(Buffer.from(digests));
    this.bytes += digests.length;
    this.next = index + 1;
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const all = Buffer.concat(this.parts);
    this.parts = [];
    this.bytes = 0;
    this.next = -1;
    await this.file.writeLeaves((this.first * this.chunkSize) / LEAF_SIZE, all);
  }
}
