import { createHash } from 'node:crypto';
import { RefugeError } from '../core/errors.js';
import { BLOB_DELTA, type EncodedBlob } from './blob-codec.js';
import { seal, unseal, type DataKey } from './sealing.js';

/**
 * Packs: many blobs in one object, so a disk of a million chunks is a few thousand objects (object stores bill per
 * request, filesystems slow down with millions of files). Layout (docs/store-format.md):
 *
 *   blob 0 | blob 1 | ... | sealed header | u32 LE length of the sealed header | "RFGPACK2"
 *
 * The header lists every blob (type, flags, hash, offset, stored and raw length) and the pack's creation time, so
 * a pack describes itself and the index can be rebuilt from packs alone. A pack's id is the SHA-256 of its sealed
 * header, which names every blob by its hash: unique per content without hashing the data twice (every blob is
 * checked by its own hash when read, and the header by its seal).
 *
 * Glossary: a *blob* is one stored item, a chunk of disk data (`data`) or a hash-tree node (`tree`), named by the
 * SHA-256 of its raw bytes.
 */

export const BLOB_TYPES = ['data', 'tree'] as const;
export type BlobType = (typeof BLOB_TYPES)[number];

export interface BlobEntry {
  type: BlobType;
  hash: string;
  /** Where the stored (compressed, sealed) bytes start in the pack, and how many there are. */
  offset: number;
  length: number;
  rawLength: number;
  flags: number;
  /** A delta blob's base (flag BLOB_DELTA): the blob it is read through (delta-frame.ts). */
  base?: string;
}

export interface PackInfo {
  id: string;
  size: number;
  createdAt: number;
  blobs: BlobEntry[];
}

const MAGIC = Buffer.from('RFGPACK2');
const TAIL = 4 + MAGIC.length;
export const ENTRY_BYTES = 1 + 1 + 32 + 4 + 4 + 4;
/** An entry's size: a delta's is followed by its base's name, so readers find a chain from the index alone. */
export const entryBytes = (e: Pick<BlobEntry, 'flags'>): number => ENTRY_BYTES + (e.flags & BLOB_DELTA ? 32 : 0);

export const packKey = (id: string): string => `packs/${id.slice(0, 2)}/${id}`;
export const packIdOfKey = (key: string): string => key.slice(key.lastIndexOf('/') + 1);

export function writeEntry(out: Buffer, at: number, e: BlobEntry): number {
  out.writeUInt8(BLOB_TYPES.indexOf(e.type), at);
  out.writeUInt8(e.flags, at + 1);
  out.write(e.hash, at + 2, 32, 'hex');
  out.writeUInt32LE(e.offset, at + 34);
  out.writeUInt32LE(e.length, at + 38);
  out.writeUInt32LE(e.rawLength, at + 42);
  if (!(e.flags & BLOB_DELTA)) return at + ENTRY_BYTES;
  if (e.base === undefined) throw new Error(`delta blob ${e.hash} has no base`);
  out.write(e.base, at + ENTRY_BYTES, 32, 'hex');
  return at + ENTRY_BYTES + 32;
}

/** The entry at `at` (its size: entryBytes); throws a plain Error when the bytes cannot be one. */
export function readEntry(buf: Buffer, at: number): BlobEntry {
  const type = BLOB_TYPES[buf.readUInt8(at)];
  if (type === undefined) throw new Error(`unknown blob type ${buf.readUInt8(at)}`);
  const flags = buf.readUInt8(at + 1);
  if (flags & BLOB_DELTA && at + ENTRY_BYTES + 32 > buf.length) throw new Error('a delta entry ends before its base');
  return {
    type,
    flags,
    hash: buf.toString('hex', at + 2, at + 34),
    offset: buf.readUInt32LE(at + 34),
    length: buf.readUInt32LE(at + 38),
    rawLength: buf.readUInt32LE(at + 42),
    ...(flags & BLOB_DELTA ? { base: buf.toString('hex', at + ENTRY_BYTES, at + ENTRY_BYTES + 32) } : {}),
  };
}

/**
 * Pack-sized buffers, reused: building a pack copies each blob into one buffer that is written as is, and goes back
 * here once written. Without reuse every pack is a fresh multi-megabyte allocation, and a seeding spends more time
 * in the garbage collector and page faults than in hashing.
 */
const freeBuffers: Buffer[] = [];
const FREE_BUFFERS_KEPT = 6;

function takeBuffer(size: number): Buffer {
  const i = freeBuffers.findIndex((b) => b.length >= size);
  return i >= 0 ? (freeBuffers.splice(i, 1)[0] as Buffer) : Buffer.allocUnsafeSlow(size);
}

/** Returns a pack's buffer (from `finish`) for reuse once nothing reads it any more. */
export function releasePackBuffer(data: Buffer): void {
  const whole = Buffer.from(data.buffer, 0, data.buffer.byteLength);
  if (freeBuffers.length < FREE_BUFFERS_KEPT && data.byteOffset === 0) freeBuffers.push(whole);
}

/** Collects encoded blobs in one buffer until the pack is big enough to write. */
export class PackBuilder {
  readonly blobs: BlobEntry[] = [];
  readonly createdAt = Date.now();
  private buffer: Buffer;
  size = 0;

  constructor(capacity = 1024 * 1024) {
    this.buffer = takeBuffer(capacity);
  }

  private reserve(n: number): void {
    if (this.size + n <= this.buffer.length) return;
    const bigger = takeBuffer(Math.max(this.size + n, this.buffer.length * 2));
    this.buffer.copy(bigger, 0, 0, this.size);
    releasePackBuffer(this.buffer);
    this.buffer = bigger;
  }

  add(type: BlobType, hash: string, blob: EncodedBlob): BlobEntry {
    const entry: BlobEntry = { type, hash, offset: this.size, length: blob.stored.length, rawLength: blob.rawLength, flags: blob.flags, ...(blob.base ? { base: blob.base } : {}) };
    this.reserve(blob.stored.length);
    blob.stored.copy(this.buffer, this.size);
    this.size += blob.stored.length;
    this.blobs.push(entry);
    return entry;
  }

  /** The stored bytes of a blob still in this builder (reads of data not yet written). */
  storedBytes(entry: BlobEntry): Buffer {
    return Buffer.from(this.buffer.subarray(entry.offset, entry.offset + entry.length));
  }

  /** The pack's bytes (a view of the builder's buffer: give it to releasePackBuffer once written). */
  finish(key: DataKey): { info: PackInfo; data: Buffer } {
    const header = Buffer.alloc(1 + 8 + 4 + this.blobs.reduce((n, e) => n + entryBytes(e), 0));
    header.writeUInt8(2, 0);
    header.writeDoubleLE(this.createdAt, 1);
    header.writeUInt32LE(this.blobs.length, 9);
    let at = 13;
    for (const e of this.blobs) at = writeEntry(header, at, e);
    const sealed = seal(header, key);
    this.reserve(sealed.length + TAIL);
    sealed.copy(this.buffer, this.size);
    this.buffer.writeUInt32LE(sealed.length, this.size + sealed.length);
    MAGIC.copy(this.buffer, this.size + sealed.length + 4);
    const data = this.buffer.subarray(0, this.size + sealed.length + TAIL);
    const id = createHash('sha256').update(sealed).digest('hex');
    return { info: { id, size: data.length, createdAt: this.createdAt, blobs: this.blobs }, data };
  }
}

/** Reads a whole pack's header, checking its structure; damage is an `integrity` error naming the pack. */
export function parsePack(data: Buffer, id: string, key: DataKey): PackInfo {
  const object = packKey(id);
  const bad = (why: string) => new RefugeError('integrity', `pack ${object} is corrupt: ${why}`, { details: { object } });
  if (data.length < TAIL || !data.subarray(data.length - MAGIC.length).equals(MAGIC)) throw bad('no pack trailer (truncated?)');
  const sealedLength = data.readUInt32LE(data.length - TAIL);
  if (sealedLength > data.length - TAIL) throw bad('header length out of range');
  const header = unseal(data.subarray(data.length - TAIL - sealedLength, data.length - TAIL), key, object);
  if (header.length < 13 || header.readUInt8(0) !== 2) throw bad('unknown header version');
  const count = header.readUInt32LE(9);
  const blobs: BlobEntry[] = [];
  const end = data.length - TAIL - sealedLength;
  let at = 13;
  for (let i = 0; i < count; i++) {
    if (at + ENTRY_BYTES > header.length) throw bad('header size does not match its blob count');
    let e: BlobEntry;
    try {
      e = readEntry(header, at);
    } catch (err) {
      throw bad((err as Error).message);
    }
    if (e.offset + e.length > end) throw bad(`blob ${e.hash} lies outside the pack`);
    blobs.push(e);
    at += entryBytes(e);
  }
  if (at !== header.length) throw bad('header size does not match its blob count');
  return { id, size: data.length, createdAt: header.readDoubleLE(1), blobs };
}

/** Whether a pack's sealed header hashes to its id (a pack under another name is as bad as a damaged one). */
export function packIdMatches(data: Buffer, id: string): boolean {
  if (data.length < TAIL) return false;
  const sealedLength = data.readUInt32LE(data.length - TAIL);
  if (sealedLength > data.length - TAIL) return false;
  return createHash('sha256').update(data.subarray(data.length - TAIL - sealedLength, data.length - TAIL)).digest('hex') === id;
}
