import { BLOB_DELTA } from './blob-codec.js';
import { BLOB_TYPES, type BlobType } from './pack.js';

/**
 * The in-memory index: blob hash -> where its stored bytes are. A million chunks (1 TiB of disk at 1 MiB chunks)
 * must fit in tens of megabytes, so entries live in one Buffer as an open-addressing hash table (52 bytes a slot,
 * at most 3/4 full) instead of a Map of objects (~200 bytes an entry). The first copy of a hash wins.
 */

export interface BlobLocation {
  packId: string;
  type: BlobType;
  offset: number;
  length: number;
  rawLength: number;
  flags: number;
  /** A delta blob's base (flag BLOB_DELTA). */
  base?: string;
}

const SLOT = 52; // hash 32 | pack number + 1 (0 = empty) 4 | offset 4 | length 4 | raw length 4 | type 1 | flags 1 | pad 2
/** A slot of a store that may hold delta blobs: the same, then the base's name (32), zeros for other blobs. */
const SLOT_WITH_BASE = SLOT + 32;

export class BlobTable {
  private table: Buffer;
  private mask: number;
  private packIds: string[] = [];
  private readonly packNumbers = new Map<string, number>();
  /** Bytes a slot: bases cost 32 bytes a blob, so only a table of a store with delta blobs keeps them. */
  private readonly slot: number;
  count = 0;

  constructor(capacity = 1024, withBases = false) {
    const slots = 2 ** Math.ceil(Math.log2(Math.max(16, capacity)));
    this.slot = withBases ? SLOT_WITH_BASE : SLOT;
    this.table = Buffer.alloc(slots * this.slot);
    this.mask = slots - 1;
  }

  private find(hash: Buffer): number {
    let i = hash.readUInt32LE(0) & this.mask;
    for (;;) {
      const at = i * this.slot;
      if (this.table.readUInt32LE(at + 32) === 0) return -1 - at; // empty: where it would go
      if (this.table.compare(hash, 0, 32, at, at + 32) === 0) return at;
      i = (i + 1) & this.mask;
    }
  }

  has(hash: string): boolean {
    return this.find(Buffer.from(hash, 'hex')) >= 0;
  }

  get(hash: string): BlobLocation | undefined {
    const at = this.find(Buffer.from(hash, 'hex'));
    if (at < 0) return undefined;
    const t = this.table;
    return {
      packId: this.packIds[t.readUInt32LE(at + 32) - 1] as string,
      offset: t.readUInt32LE(at + 36),
      length: t.readUInt32LE(at + 40),
      rawLength: t.readUInt32LE(at + 44),
      type: BLOB_TYPES[t.readUInt8(at + 48)] as BlobType,
      flags: t.readUInt8(at + 49),
      ...(t.readUInt8(at + 49) & BLOB_DELTA ? { base: t.toString('hex', at + SLOT, at + SLOT + 32) } : {}),
    };
  }

  /**
   * Adds a blob unless its hash is already known (a duplicate copy elsewhere is then ignored), except that a whole copy
   * takes the place of a delta: it needs no other blob (a repair may have removed the delta's base, and the chunk
   * was sent again whole).
   */
  add(hash: string, loc: BlobLocation): void {
    if ((this.count + 1) * 4 > (this.mask + 1) * 3) this.grow();
    const key = Buffer.from(hash, 'hex');
    const found = this.find(key);
    if (found >= 0 && !(this.table.readUInt8(found + 49) & BLOB_DELTA && !(loc.flags & BLOB_DELTA))) return;
    if (found >= 0) this.count--; // replaced below
    const at = found >= 0 ? found : -1 - found;
    let pack = this.packNumbers.get(loc.packId);
    if (pack === undefined) {
      pack = this.packIds.push(loc.packId);
      this.packNumbers.set(loc.packId, pack);
    }
    key.copy(this.table, at);
    this.table.writeUInt32LE(pack, at + 32);
    this.table.writeUInt32LE(loc.offset, at + 36);
    this.table.writeUInt32LE(loc.length, at + 40);
    this.table.writeUInt32LE(loc.rawLength, at + 44);
    this.table.writeUInt8(BLOB_TYPES.indexOf(loc.type), at + 48);
    this.table.writeUInt8(loc.flags, at + 49);
    if (loc.flags & BLOB_DELTA) {
      if (this.slot !== SLOT_WITH_BASE || loc.base === undefined) throw new Error(`delta blob ${hash} without a base, or in a store without deltas`);
      this.table.write(loc.base, at + SLOT, 32, 'hex');
    }
    this.count++;
  }

  private grow(): void {
    const old = this.table;
    const oldPacks = this.packIds;
    this.table = Buffer.alloc(old.length * 2); // the same slot size
    this.mask = this.mask * 2 + 1;
    this.count = 0;
    this.packIds = [];
    this.packNumbers.clear();
    for (let at = 0; at < old.length; at += this.slot) {
      const pack = old.readUInt32LE(at + 32);
      if (pack === 0) continue;
      const flags = old.readUInt8(at + 49);
      this.add(old.toString('hex', at, at + 32), {
        packId: oldPacks[pack - 1] as string,
        offset: old.readUInt32LE(at + 36),
        length: old.readUInt32LE(at + 40),
        rawLength: old.readUInt32LE(at + 44),
        type: BLOB_TYPES[old.readUInt8(at + 48)] as BlobType,
        flags,
        ...(flags & BLOB_DELTA ? { base: old.toString('hex', at + SLOT, at + SLOT + 32) } : {}),
      });
    }
  }
}
