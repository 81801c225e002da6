/** Chunks per page of slots: 16 KiB, 1 GiB of disk at 256 KiB chunks. */
const PAGE = 4096;

/**
 * The chunk hashes of one disk at a point (what the agent compares the next cut against), kept compact: a slot per
 * chunk plus 32 bytes a non-zero chunk. A JavaScript array of hex strings cost 8 bytes a chunk plus ~80 a hash,
 * copied at every point and saved as JSON: 1 TiB of sparse disks at 256 KiB chunks (4 Mi chunks) took over 100 MiB
 * of the agent's 150 MiB budget (P11); its saved form holds only the non-zero chunks. The slots come in pages of
 * PAGE chunks allocated when a chunk of the page first holds data: 1 TiB of sparse disks costs its data's pages
 * (a flat slot array cost 16 MiB, and 32 MiB while a point's copy was made), a full disk 4 bytes a chunk.
 */
export class ChunkHashes {
  /** Per page of PAGE chunks, undefined while all its chunks are zero; per chunk 0 (zero) or k > 0, the digest at digests[(k - 1) * 32]. */
  private readonly pages: (Uint32Array | undefined)[];
  private digests: Buffer;
  private used = 0;
  /** Digest places freed by chunks that became zero, reused first. */
  private free: number[] = [];

  constructor(readonly length: number) {
    this.pages = new Array<Uint32Array | undefined>(Math.ceil(length / PAGE)).fill(undefined);
    this.digests = Buffer.alloc(0);
  }

  static fromList(list: readonly (string | null)[]): ChunkHashes {
    const h = new ChunkHashes(list.length);
    list.forEach((hash, i) => hash !== null && h.set(i, hash));
    return h;
  }

  /** `length` chunks, zero but for the [index, hash] entries given (a sparse listing). */
  static fromEntries(length: number, entries: readonly (readonly [number, string])[]): ChunkHashes {
    const h = new ChunkHashes(length);
    for (const [i, hash] of entries) h.set(i, hash); // an index outside the disk is a RangeError
    return h;
  }

  /** The hash of chunk `i` (hex: its name as the store names chunks, store/chunks.ts), or null for a zero chunk. */
  get(i: number): string | null {
    const slot = this.slot(i);
    return slot === 0 ? null : this.digests.toString('hex', (slot - 1) * 32, slot * 32);
  }

  set(i: number, hash: string | null): void {
    if (i < 0 || i >= this.length) throw new RangeError(`chunk ${i} of ${this.length}`);
    let page = this.pages[Math.floor(i / PAGE)];
    let slot = page?.[i % PAGE] ?? 0;
    if (hash === null) {
      if (slot === 0) return;
      this.free.push(slot);
      (page as Uint32Array)[i % PAGE] = 0;
      return;
    }
    if (slot === 0) {
      page ??= this.pages[Math.floor(i / PAGE)] = new Uint32Array(PAGE);
      slot = this.free.pop() ?? this.grow();
      page[i % PAGE] = slot;
    }
    this.digests.write(hash, (slot - 1) * 32, 32, 'hex');
  }

  private slot(i: number): number {
    return this.pages[Math.floor(i / PAGE)]?.[i % PAGE] ?? 0;
  }

  private grow(): number {
    if (this.used * 32 === this.digests.length) {
      const bigger = Buffer.alloc(Math.max(32 * 1024, this.digests.length * 2));
      this.digests.copy(bigger);
      this.digests = bigger;
    }
    return ++this.used;
  }

  clone(): ChunkHashes {
    const c = new ChunkHashes(this.length);
    this.pages.forEach((page, p) => (c.pages[p] = page && Uint32Array.from(page)));
    c.digests = Buffer.from(this.digests.subarray(0, this.used * 32));
    c.used = this.used;
    c.free = [...this.free];
    return c;
  }

  /** The non-zero chunks as [uint32 LE index, 32-byte digest] records, in index order: the saved form (state.ts). */
  records(): Buffer {
    const out = Buffer.allocUnsafe(this.used * 36);
    let at = 0;
    this.pages.forEach((page, p) => {
      if (!page) return;
      for (let j = 0; j < PAGE; j++) {
        const slot = page[j] as number;
        if (slot === 0) continue;
        out.writeUInt32LE(p * PAGE + j, at);
        this.digests.copy(out, at + 4, (slot - 1) * 32, slot * 32);
        at += 36;
      }
    });
    return out.subarray(0, at); // freed slots (chunks that became zero) leave `used` above the count
  }

  /** `length` chunks from `records()`' form; a torn trailing record is ignored. */
  static fromRecords(length: number, bytes: Buffer): ChunkHashes {
    const h = new ChunkHashes(length);
    for (let at = 0; at + 36 <= bytes.length; at += 36) h.set(bytes.readUInt32LE(at), bytes.toString('hex', at + 4, at + 36));
    return h;
  }

  /** Former saved form (agent-state.json before 2026-12-03): the records in base64. */
  toJSON(): { length: number; chunks: string } {
    return { length: this.length, chunks: this.records().toString('base64') };
  }

  /** Reads the saved form, or the former one (an array of hashes and nulls); undefined when it is neither. */
  static fromJSON(json: unknown): ChunkHashes | undefined {
    if (Array.isArray(json)) return ChunkHashes.fromList(json as (string | null)[]);
    const o = json as { length?: unknown; chunks?: unknown } | null;
    if (typeof o?.length !== 'number' || typeof o.chunks !== 'string') return undefined;
    return ChunkHashes.fromRecords(o.length, Buffer.from(o.chunks, 'base64'));
  }
}
