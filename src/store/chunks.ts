import { createHash, hash } from 'node:crypto';
import { RefugeError } from '../core/errors.js';

/**
 * Default chunk size, chosen by benchmark (docs/benchmarks.md, "chunk size"): chunks are aligned to disk offsets
 * (content does not shift within a disk, so no CDC).
 */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;

/** Chunks are addressed by the lowercase hex SHA-256 of their bytes (a format-2 store's naming). */
export function chunkHash(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * How a store names its blobs (its format, store-config.ts): `sha256`, the SHA-256 of the bytes (format 2), or
 * `leaf16`, a hash over the SHA-256 of each 16 KiB leaf (format 3, docs/design-delta-points.md): a function of the
 * bytes alone as well, but one whose value after a small write follows from the digests of the leaves written and
 * the remembered digests of the others, without reading or hashing the rest of the chunk.
 */
export type BlobNaming = 'sha256' | 'leaf16';
export const LEAF_SIZE = 16 * 1024;
const LEAF_DOMAIN = Buffer.from('RFG3', 'latin1');

/** The SHA-256 of each LEAF_SIZE leaf of `data` (the last may be shorter), 32 bytes each, into `out` when given. */
export function leafDigests(data: Uint8Array, out?: Buffer): Buffer {
  const count = Math.max(1, Math.ceil(data.length / LEAF_SIZE));
  const digests = out ?? Buffer.allocUnsafe(count * 32);
  // crypto.hash, one call per leaf: a Hash object per 16 KiB leaf cost about a tenth of the throughput.
  for (let i = 0; i < count; i++) hash('sha256', data.subarray(i * LEAF_SIZE, Math.min(data.length, (i + 1) * LEAF_SIZE)), 'buffer').copy(digests, i * 32);
  return digests;
}

const zeroLeaves = new Map<number, Buffer>();
/** The leaf digests of a zero chunk of `length` bytes (one per leaf), computed once per length. */
export function zeroDigests(length: number): Buffer {
  let d = zeroLeaves.get(length);
  if (!d) zeroLeaves.set(length, (d = leafDigests(Buffer.alloc(length))));
  return d;
}

/** A `leaf16` name from the blob's length and its leaf digests: SHA-256("RFG3" | u32 BE length | digests). */
export function nameFromLeafDigests(length: number, digests: Uint8Array): string {
  const head = Buffer.allocUnsafe(8);
  LEAF_DOMAIN.copy(head, 0);
  head.writeUInt32BE(length, 4);
  return createHash('sha256').update(head).update(digests).digest('hex');
}

/**
 * A non-zero chunk's name under `naming`, with its leaf digests when the naming is built on them (into `out` when
 * given): what the agent hashes a chunk read whole with, so that it can keep the digests (agent/leaf-digests.ts).
 */
export function nameWithDigests(data: Uint8Array, naming: BlobNaming, out?: Buffer): { hash: string; digests?: Buffer } {
  if (naming !== 'leaf16') return { hash: blobName(data, naming) };
  const digests = leafDigests(data, out);
  return { hash: nameFromLeafDigests(data.length, digests), digests };
}

export const BLOB_NAMINGS: readonly BlobNaming[] = ['sha256', 'leaf16'];
export const isBlobNaming = (s: unknown): s is BlobNaming => (BLOB_NAMINGS as readonly unknown[]).includes(s);

/** The name of a blob of `data` under `naming`; a naming this Refuge does not know is an error, never a guess. */
export function blobName(data: Uint8Array, naming: BlobNaming): string {
  if (naming === 'sha256') return chunkHash(data);
  if (naming === 'leaf16') return nameFromLeafDigests(data.length, leafDigests(data));
  throw new RefugeError('invalid_argument', `'${String(naming)}' is not a blob naming this Refuge knows (${BLOB_NAMINGS.join(', ')})`);
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
  for (const [offset, length, at] of patchRuns(patch, chunkLength)) patch.copy(out, offset, at, at + length);
  return out;
}

/**
 * A patch's runs as [offset in the chunk, length, offset of the bytes in the patch], checked: each header whole, runs
 * ascending, not overlapping, not empty and inside a chunk of `chunkLength` bytes; `invalid_argument` otherwise.
 * What applyPatch applies, and what the leaf-framed rebuild (leaf-frame.ts) reads to know the leaves written.
 */
export function patchRuns(patch: Buffer, chunkLength: number): [number, number, number][] {
  const runs: [number, number, number][] = [];
  let at = 0;
  let end = 0;
  while (at < patch.length) {
    if (at + 8 > patch.length) throw new RefugeError('invalid_argument', 'patch ends inside a run header');
    const offset = patch.readUInt32BE(at);
    const length = patch.readUInt32BE(at + 4);
    if (offset < end || length === 0 || offset + length > chunkLength || at + 8 + length > patch.length) {
      throw new RefugeError('invalid_argument', `patch run ${offset}+${length} is out of order or outside the chunk (or the body is short)`);
    }
    runs.push([offset, length, at + 8]);
    end = offset + length;
    at += 8 + length;
  }
  return runs;
}
