import { createHash } from 'node:crypto';

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
