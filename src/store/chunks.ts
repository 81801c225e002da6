import { createHash } from 'node:crypto';
import { RefugeError } from '../core/errors.js';

/**
 * Default chunk size, chosen by benchmark (docs/benchmarks.md, "chunk size"): chunks are aligned to disk offsets
 * (content does not shift within a disk, so no CDC).
 */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;

/** Chunks are addressed by the lowercase hex SHA-256 of their bytes. */
export function chunkHash(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export const HASH_PATTERN = '^[0-9a-f]{64}$';
const HASH_RE = new RegExp(HASH_PATTERN);
export const isChunkHash = (s: string): boolean => HASH_RE.test(s);

let zeros = Buffer.alloc(1024 * 1024);

/** Whether every byte is zero; compares against a zero buffer (memcmp speed), never a byte loop. */
export function isZero(data: Uint8Array): boolean {
  if (data.length > zeros.length) zeros = Buffer.alloc(data.length);
  return Buffer.from(data.buffer, data.byteOffset, data.length).equals(zeros.subarray(0, data.length));
}

/** Number of chunks covering a disk of `sizeBytes`; the last may be shorter. */
export const chunkCount = (sizeBytes: number, chunkSize: number): number => Math.ceil(sizeBytes / chunkSize);

export const chunkLength = (sizeBytes: number, chunkSize: number, index: number): number =>
  Math.min(chunkSize, sizeBytes - index * chunkSize);

/**
 * Applies a patch (protocol/chunk-encoding.ts: runs of [u32 offset][u32 length][bytes]) to a copy of `base` (a
 * zero chunk when null); throws `invalid_argument` for a malformed patch. It lives in the store because the store's
 * worker threads rebuild patched uploads (blob-worker.ts). With `inPlace` the base's own bytes are patched (the caller
 * owns them and needs them no more): no copy, and no fresh 256 KiB allocation per chunk.
 */
export function applyPatch(base: Buffer | null, patch: Buffer, chunkLength: number, inPlace = false): Buffer {
  if (base && base.length !== chunkLength) {
    throw new RefugeError('invalid_argument', `patch base has ${base.length} bytes, the chunk ${chunkLength}`);
  }
  let out: Buffer;
  if (!base) out = Buffer.alloc(chunkLength);
  else if (inPlace) out = base;
  else {
    out = Buffer.allocUnsafe(chunkLength);
    base.copy(out); // the same length: every byte set
  }
  let at = 0;
  let end = 0;
  while (at < patch.length) {
    if (at + 8 > patch.length) throw new RefugeError('invalid_argument', 'patch ends inside a run header');
    const offset = patch.readUInt32BE(at);
    const length = patch.readUInt32BE(at + 4);
    if (offset < end || length === 0 || offset + length > chunkLength || at + 8 + length > patch.length) {
      throw new RefugeError('invalid_argument', `patch run ${offset}+${length} is out of order or outside the chunk (or the body is short)`);
    }
    patch.copy(out, offset, at + 8, at + 8 + length);
    end = offset + length;
    at += 8 + length;
  }
  return out;
}
