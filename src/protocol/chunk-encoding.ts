import { createHash } from 'node:crypto';
import binding from 'zstd-napi/binding.js';
import { RefugeError } from '../core/errors.js';

/**
 * How chunk bytes travel from agent to replicator (docs/protocol.md, "Chunk uploads"). A chunk goes either whole
 * or as a *patch*: the byte runs that differ from a *base* chunk the store already holds (the chunk at the same
 * index in the parent point), so a 4 KiB write into a 1 MiB chunk ships about 4 KiB. Either body may be
 * zstd-compressed. The receiver rebuilds the whole chunk and checks it against the hash in the URL, so a wrong
 * base, patch or compression can never store wrong bytes.
 *
 * Patch body: repeated [u32 offset][u32 length][length bytes], runs ascending and not overlapping, big-endian.
 */

export const CHUNK_CONTENT_TYPE = 'application/octet-stream';
/** The largest chunk a replication may use (a policy's chunk size is at most this): it bounds upload bodies. */
export const MAX_REPLICATION_CHUNK_SIZE = 1024 * 1024;
export const PATCH_CONTENT_TYPE = 'application/vnd.refuge.chunk-patch';
/** Request headers of a patch upload: the base chunk's hash (or `zero` for a chunk of zeros) and the chunk's length. */
export const PATCH_BASE_HEADER = 'x-refuge-patch-base';
export const CHUNK_LENGTH_HEADER = 'x-refuge-chunk-length';

export type Run = [offset: number, length: number];

/** The length of the patch body carrying `runs`. */
export const patchLength = (runs: readonly Run[]): number => runs.reduce((n, [, l]) => n + 8 + l, 0);

export function encodePatch(chunk: Buffer, runs: readonly Run[]): Buffer {
  const out = Buffer.allocUnsafe(patchLength(runs));
  encodePatchInto(out, chunk, runs);
  return out;
}

/** Writes the patch of `chunk` carrying `runs` at the start of `out` (which has room for `patchLength(runs)`). */
export function encodePatchInto(out: Buffer, chunk: Buffer, runs: readonly Run[]): number {
  let at = 0;
  for (const [offset, length] of runs) {
    out.writeUInt32BE(offset, at);
    out.writeUInt32BE(length, at + 4);
    chunk.copy(out, at + 8, offset, offset + length);
    at += 8 + length;
  }
  return at;
}

/** Applies a patch to a copy of `base` (the store's worker threads rebuild patched uploads with it). */
export { applyPatch } from '../store/chunks.js';

/** What a compressed body must save to be sent compressed: at least 10% of the raw bytes. */
const USEFUL_SHARE = 0.9;
const MIN_COMPRESSIBLE = 512;
const SAMPLE_BYTES = 4096;
let cctx: InstanceType<typeof binding.CCtx> | undefined;

/** How much of a body's middle is compressed first to judge it (0: judged by compressing it whole). */
const sampleLength = (length: number): number => (length > 4 * SAMPLE_BYTES ? SAMPLE_BYTES : length >= SAMPLE_BYTES ? Math.floor(length / 4) : 0);

/**
 * Compresses `src` (zstd level 1: ~2.5 GB/s here, so it never slows shipping) straight into `dst` when that saves at
 * least 10%, and returns the compressed length; -1 when it would not (`dst` then holds garbage). Nothing is
 * allocated: the agent compresses each chunk into its place in a batch body (P11, agent memory). zstd is given room
 * for only 90% of `src`, so incompressible data fails fast instead of being compressed in full and thrown away.
 */
export function compressInto(dst: Buffer, src: Uint8Array): number {
  if (src.length < MIN_COMPRESSIBLE) return -1;
  const room = Math.min(dst.length, Math.floor(src.length * USEFUL_SHARE));
  cctx ??= new binding.CCtx();
  // A body whose middle part does not compress is taken as incompressible (random or encrypted guest data, the
  // common case of scattered writes), as the store judges chunks over 16 KiB (blob-codec.ts): zstd's failing pass over 90% of it cost the
  // agent about 3 ms per MB, over 5% of its time under sustained random writes (P5 profile). The part is 4 KiB of a
  // body over 16 KiB and a quarter of a smaller one from 4 KiB up: a cdp patch of one 8 KiB write is 8,200 bytes,
  // and a full failing pass over each such patch was still 10% of the agent's main thread under P5 (4.7 of 48 s).
  const sample = sampleLength(src.length);
  if (sample > 0) {
    const start = Math.floor((src.length - sample) / 2);
    try {
      cctx.compress(dst.subarray(0, Math.min(room, Math.floor(sample * USEFUL_SHARE))), src.subarray(start, start + sample), 1);
    } catch {
      return -1;
    }
  }
  try {
    return cctx.compress(dst.subarray(0, room), src, 1);
  } catch {
    return -1; // "Destination buffer is too small": it would not save 10%
  }
}

/** `body` zstd-compressed when that saves at least 10% (see `compressInto`); otherwise as it is, `compressed` false. */
export function compressIfUseful(body: Buffer): { body: Buffer; compressed: boolean } {
  if (body.length < MIN_COMPRESSIBLE) return { body, compressed: false };
  const out = Buffer.allocUnsafe(Math.floor(body.length * USEFUL_SHARE));
  const n = compressInto(out, body);
  return n < 0 ? { body, compressed: false } : { body: out.subarray(0, n), compressed: true };
}

/** Decompresses into at most `maxBytes`; a larger or malformed frame is the sender's error, never an allocation. */
export function decompressBounded(body: Buffer, maxBytes: number): Buffer {
  const out = Buffer.allocUnsafe(maxBytes);
  let n: number;
  try {
    n = binding.decompress(out, body);
  } catch (err) {
    throw new RefugeError('invalid_argument', `zstd body does not decompress within ${maxBytes} bytes: ${(err as Error).message}`);
  }
  return out.subarray(0, n);
}

/**
 * Block digests, for patches without change tracking (resync, re-protect): the replicator answers the digest of each
 * `BLOCK_SIZE` block of a stored chunk (the first 128 bits of its SHA-256, hex), and the agent patches only the
 * blocks whose digest differs from its own bytes. A chunk's SHA-256 still verifies the rebuilt result.
 */
export const BLOCK_SIZE = 4096;

export function blockDigests(chunk: Buffer, blockSize = BLOCK_SIZE): string[] {
  const out: string[] = [];
  for (let at = 0; at < chunk.length; at += blockSize) {
    out.push(createHash('sha256').update(chunk.subarray(at, Math.min(chunk.length, at + blockSize))).digest('hex').slice(0, 32));
  }
  return out;
}

/** The runs of `chunk` whose blocks differ from `baseDigests` (adjacent blocks merged); blocks past the base differ. */
export function differingRuns(chunk: Buffer, baseDigests: readonly string[], blockSize = BLOCK_SIZE): Run[] {
  const mine = blockDigests(chunk, blockSize);
  const runs: Run[] = [];
  for (const [i, d] of mine.entries()) {
    if (baseDigests[i] === d) continue;
    const offset = i * blockSize;
    const length = Math.min(blockSize, chunk.length - offset);
    const last = runs.at(-1);
    if (last && last[0] + last[1] === offset) last[1] += length;
    else runs.push([offset, length]);
  }
  return runs;
}
