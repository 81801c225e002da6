/**
 * Which 4 KiB blocks of a disk were written, kept sparse: one 32-byte bitmap per 1 MiB region, allocated when the
 * region is first written. A 1 TiB disk of which 1 GiB was written costs 1024 small bitmaps, not 32 MiB. Regions
 * are independent of the replica store's chunk size, so tracking runs from the moment a VM boots, before the vault
 * says which chunk size the store uses; questions are asked in byte ranges (a chunk of any power-of-two size).
 */

export const TRACKING_BLOCK = 4096;
export const TRACKING_REGION = 1024 * 1024;
const BLOCKS_PER_REGION = TRACKING_REGION / TRACKING_BLOCK;
const REGION_BYTES = BLOCKS_PER_REGION / 8;
/** Shared by every fully-written region; never mutated (marking a full region changes nothing). */
const FULL = new Uint8Array(REGION_BYTES).fill(0xff);

/**
 * Region index -> bitmap, as a typed array of slots into a pool: allocating it for a 1 TiB disk is one zeroed
 * 4 MiB block (microseconds), where a JavaScript array of a million holes costs milliseconds, and a cut allocates
 * a fresh one inside the write path's pause.
 */
class RegionTable {
  /** Per region: 0 unwritten, -1 FULL, k > 0 the bitmap at pool[k - 1]. */
  private readonly slots: Int32Array;
  private readonly pool: Uint8Array[] = [];

  constructor(readonly length: number) {
    this.slots = new Int32Array(length);
  }

  get(r: number): Uint8Array | undefined {
    const slot = this.slots[r] ?? 0;
    return slot === 0 ? undefined : slot === -1 ? FULL : this.pool[slot - 1];
  }

  set(r: number, bits: Uint8Array): void {
    if (bits === FULL) {
      this.slots[r] = -1;
      return;
    }
    const slot = this.slots[r] ?? 0;
    if (slot > 0) this.pool[slot - 1] = bits;
    else this.slots[r] = this.pool.push(bits);
  }
}

export class BlockBitmap {
  private readonly regions: RegionTable;
  /** Indexes of allocated regions, in allocation order: listing them costs what was written, not the disk's size. */
  private used: number[] = [];

  constructor(readonly sizeBytes: number) {
    this.regions = new RegionTable(Math.ceil(sizeBytes / TRACKING_REGION));
  }

  get regionCount(): number {
    return this.regions.length;
  }

  get isEmpty(): boolean {
    return this.used.length === 0;
  }

  /** Marks every block overlapping [offset, offset + length); calls `onNewRegion` for regions written first now. */
  mark(offset: number, length: number, onNewRegion?: (region: number) => void): void {
    if (length <= 0) return;
    const firstBlock = Math.floor(offset / TRACKING_BLOCK);
    const lastBlock = Math.floor((offset + length - 1) / TRACKING_BLOCK);
    for (let r = Math.floor(firstBlock / BLOCKS_PER_REGION); r <= Math.floor(lastBlock / BLOCKS_PER_REGION); r++) {
      let bits = this.regions.get(r);
      if (bits === FULL) continue;
      if (!bits) {
        bits = new Uint8Array(REGION_BYTES);
        this.regions.set(r, bits);
        this.used.push(r);
        onNewRegion?.(r);
      }
      const from = Math.max(firstBlock, r * BLOCKS_PER_REGION) - r * BLOCKS_PER_REGION;
      const to = Math.min(lastBlock, (r + 1) * BLOCKS_PER_REGION - 1) - r * BLOCKS_PER_REGION;
      setBits(bits, from, to);
    }
  }

  /** Marks the whole disk (tracking was lost: every block may differ). */
  markAll(): void {
    for (let r = 0; r < this.regions.length; r++) this.regions.set(r, FULL);
    this.used = Array.from({ length: this.regions.length }, (_, r) => r);
  }

  /** Marks whole regions (from a persisted region log, which knows regions but not blocks). */
  markRegion(region: number): void {
    if (region < 0 || region >= this.regions.length) return;
    if (!this.regions.get(region)) this.used.push(region);
    this.regions.set(region, FULL);
  }

  hasRegion(region: number): boolean {
    return this.regions.get(region) !== undefined;
  }

  /** Whether any block overlapping [start, end) is marked. */
  any(start: number, end: number): boolean {
    return this.runs(start, end, true).length > 0;
  }

  /** Marked blocks within [start, end) as [offset, length] runs, clipped to the range and to the disk. */
  runs(start: number, end: number, firstOnly = false): [number, number][] {
    const out: [number, number][] = [];
    end = Math.min(end, this.sizeBytes);
    let runStart = -1;
    const close = (at: number) => {
      if (runStart >= 0) out.push([runStart, Math.min(at, end) - runStart]);
      runStart = -1;
    };
    for (let block = Math.floor(start / TRACKING_BLOCK); block * TRACKING_BLOCK < end; ) {
      const r = Math.floor(block / BLOCKS_PER_REGION);
      const bits = this.regions.get(r);
      if (!bits) {
        close(Math.max(start, block * TRACKING_BLOCK));
        block = (r + 1) * BLOCKS_PER_REGION;
        continue;
      }
      const i = block - r * BLOCKS_PER_REGION;
      const set = ((bits[i >> 3] as number) & (1 << (i & 7))) !== 0;
      const at = Math.max(start, block * TRACKING_BLOCK);
      if (set && runStart < 0) runStart = at;
      if (!set) close(at);
      if (firstOnly && out.length > 0) return out;
      block++;
    }
    close(end);
    return out;
  }

  /** Bytes covered by marked blocks (an estimate of what is still to ship). */
  markedBytes(): number {
    let blocks = 0;
    for (const r of this.used) {
      const bits = this.regions.get(r) as Uint8Array;
      if (bits === FULL) blocks += BLOCKS_PER_REGION;
      else for (const byte of bits) blocks += POPCOUNT[byte] as number;
    }
    return Math.min(blocks * TRACKING_BLOCK, this.sizeBytes);
  }

  /** Adds every mark of `other` (same disk) to this bitmap. */
  mergeFrom(other: BlockBitmap): void {
    for (const r of other.used) {
      const bits = other.regions.get(r) as Uint8Array;
      const mine = this.regions.get(r);
      if (!mine) this.used.push(r);
      if (bits === FULL || mine === FULL) this.regions.set(r, FULL);
      else if (!mine) this.regions.set(r, Uint8Array.from(bits));
      else for (let i = 0; i < REGION_BYTES; i++) mine[i] = (mine[i] as number) | (bits[i] as number);
    }
  }

  /** Indexes of regions with any mark, in no particular order. */
  markedRegions(): readonly number[] {
    return this.used;
  }

  toJSON(): { sizeBytes: number; regions: [number, string][] } {
    const regions: [number, string][] = [...this.used].sort((a, b) => a - b).map((r) => [r, Buffer.from(this.regions.get(r) as Uint8Array).toString('base64')]);
    return { sizeBytes: this.sizeBytes, regions };
  }

  static fromJSON(json: { sizeBytes: number; regions: [number, string][] }): BlockBitmap {
    const b = new BlockBitmap(json.sizeBytes);
    for (const [r, text] of json.regions) {
      const bits = Buffer.from(text, 'base64');
      if (r < 0 || r >= b.regions.length || bits.length !== REGION_BYTES) throw new Error(`bad region ${r} in a saved bitmap`);
      if (!b.regions.get(r)) b.used.push(r);
      b.regions.set(r, bits.equals(FULL) ? FULL : new Uint8Array(bits));
    }
    return b;
  }
}

/** Sets bits [from, to] (inclusive), whole bytes at a time in the middle. */
function setBits(bits: Uint8Array, from: number, to: number): void {
  let i = from;
  while (i <= to && (i & 7) !== 0) bits[i >> 3] = (bits[i >> 3] as number) | (1 << (i++ & 7));
  if (i + 8 <= to + 1) {
    bits.fill(0xff, i >> 3, (to + 1) >> 3);
    i = ((to + 1) >> 3) << 3;
  }
  while (i <= to) bits[i >> 3] = (bits[i >> 3] as number) | (1 << (i++ & 7));
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, n) => {
  let c = 0;
  for (let x = n; x; x >>= 1) c += x & 1;
  return c;
});
