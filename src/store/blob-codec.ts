import { compress, decompress } from 'zstd-napi';
import { blobName, type BlobNaming } from './chunks.js';
import { decodeFramed, encodeFramed } from './leaf-frame.js';
import { seal, tryUnseal, type DataKey } from './sealing.js';
import { decompressInto } from './zstd-into.js';

/**
 * How one blob (a chunk of disk data or a tree node) is stored inside a pack: zstd-compressed when that saves at
 * least 1/16 of its size, then, in an encrypted store, sealed (sealing.ts). A plain store of format 3 keeps it
 * leaf-framed instead (leaf-frame.ts: each 16 KiB leaf compressed on its own, behind the leaves' digests, lengths
 * and CRC-32s, which serve the rebuild of patches). No read trusts a checksum of its own: a blob's name is a hash of
 * its raw bytes and every read checks it. Incompressible data (already compressed or encrypted guest data, random
 * bytes) is found by compressing a 4 KiB sample first, so it costs almost nothing.
 * Runs in worker threads (blob-worker.ts) as well as on the main thread; it throws plain Errors, which callers
 * turn into RefugeErrors naming the object.
 */

export const BLOB_COMPRESSED = 1;
/** Stored leaf-framed (leaf-frame.ts): a plain format-3 store's blobs, whose patches are rebuilt leaf by leaf. */
export const BLOB_LEAVES = 2;
/**
 * Stored as a delta on another blob (delta-frame.ts): only the leaves its patch touched, read through its base,
 * whose name the blob's index entry carries (pack.ts). A plain store of format 4 writes them.
 */
export const BLOB_DELTA = 4;
/** Flags whose blobs decode into new memory (not a view of the stored bytes): a reader gives them room. */
export const BLOB_DECODED_ELSEWHERE = BLOB_COMPRESSED | BLOB_LEAVES | BLOB_DELTA;

/** What a decoded blob must hash to: its name, computed as its store names blobs. */
export interface BlobCheck {
  hash: string;
  naming: BlobNaming;
  /**
   * Also what reads need not check (a leaf-framed blob's CRC-32s, leaf-frame.ts crcProblem): for verify, and for
   * repair and garbage collection before they copy a blob.
   */
  strict?: boolean;
}

export interface EncodedBlob {
  stored: Buffer;
  flags: number;
  rawLength: number;
  /** A delta's base (flag BLOB_DELTA). */
  base?: string;
}

const SAMPLE = 4096;

function worthCompressing(raw: Uint8Array, level: number): boolean {
  if (raw.length <= 4 * SAMPLE) return true;
  const start = Math.floor((raw.length - SAMPLE) / 2);
  return compress(raw.subarray(start, start + SAMPLE), { compressionLevel: Math.min(level, 1) }).length < SAMPLE * 0.9;
}

/**
 * `raw` as the store keeps it. A plain store naming blobs by leaf digests (format 3) frames them by leaf
 * (leaf-frame.ts); `digests`, when the caller has hashed `raw` already, saves hashing it again there.
 */
export function encodeBlob(raw: Uint8Array, level: number, key: DataKey, naming: BlobNaming, digests?: Uint8Array): EncodedBlob {
  if (naming === 'leaf16' && key === null) {
    const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    return { stored: encodeFramed(bytes, level, level > 0 && worthCompressing(raw, level), digests), flags: BLOB_LEAVES, rawLength: raw.length };
  }
  let body: Uint8Array = raw;
  let flags = 0;
  if (level > 0 && worthCompressing(raw, level)) {
    const packed = compress(raw, { compressionLevel: level });
    if (packed.length <= raw.length - raw.length / 16) {
      body = packed;
      flags |= BLOB_COMPRESSED;
    }
  }
  return { stored: key === null ? Buffer.from(body.buffer, body.byteOffset, body.byteLength) : seal(body, key), flags, rawLength: raw.length };
}

/**
 * The raw bytes of a stored blob, checked against `hash`; a reason string when the blob is damaged. Every path
 * that returns data checks the hash, so no damage (or a bug in an earlier stage) can return wrong bytes. With
 * `into` (at least `rawLength` bytes), a compressed blob is decompressed into it and a view of it returned.
 * A leaf-framed blob is decoded into `into` as well (leaf-frame.ts). `check` null skips the check: only for a caller that checks what it builds from the bytes (a patch's base, whose
 * rebuilt chunk is hashed, and the base checked only when that fails). The name is computed as the store names its
 * blobs (`naming`, its format).
 */
export function decodeBlob(stored: Buffer, flags: number, rawLength: number, check: BlobCheck | null, key: DataKey, into?: Buffer): Buffer | string {
  // A delta's bytes need its base's: it is read through its chain (BlobStore.read), or checked alone (checkDeltaAlone).
  if (flags & BLOB_DELTA) return 'is a delta blob, read through its chain only';
  const body = key === null ? stored : tryUnseal(stored, key);
  if (body === null) return 'authentication tag mismatch (damaged, or sealed under another key)';
  if (flags & BLOB_LEAVES) {
    const raw = decodeFramed(body, rawLength, check?.naming === 'leaf16' ? check.hash : null, into, check?.strict === true);
    if (typeof raw === 'string' || check === null || check.naming === 'leaf16') return raw;
    return blobName(raw, check.naming) === check.hash ? raw : 'bytes do not hash to the blob name';
  }
  let raw: Buffer;
  if (flags & BLOB_COMPRESSED) {
    try {
      raw = into && into.length >= rawLength ? into.subarray(0, decompressInto(into.subarray(0, rawLength), body)) : decompress(body);
    } catch (err) {
      return `does not decompress (${(err as Error).message})`;
    }
  } else {
    raw = body;
  }
  if (raw.length !== rawLength) return `has ${raw.length} bytes where ${rawLength} were stored`;
  if (check !== null && blobName(raw, check.naming) !== check.hash) return 'bytes do not hash to the blob name';
  return raw;
}

