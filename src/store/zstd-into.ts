import { createRequire } from 'node:module';
import type * as ZstdLowLevel from 'zstd-napi/binding.js';

/**
 * zstd into a caller's buffer, through zstd-napi's low-level binding (part of its documented API): the high-level
 * `compress`/`decompress` allocate a fresh buffer per call, half a gigabyte per restore of the standard image. One
 * context of each kind per thread, made on first use (the store's code runs on the main thread and its workers).
 */
type Zstd = typeof ZstdLowLevel;
let cctx: InstanceType<Zstd['CCtx']> | undefined;
let dctx: InstanceType<Zstd['DCtx']> | undefined;
const binding = (): Zstd => createRequire(import.meta.url)('zstd-napi/binding.js') as Zstd;

/** Decompresses `body` into `into`; returns the bytes written. Throws for a malformed frame or one too large. */
export function decompressInto(into: Uint8Array, body: Uint8Array): number {
  dctx ??= new (binding().DCtx)();
  return dctx.decompress(into, body);
}

/** Compresses `src` at `level` into `dst`; returns the bytes written. Throws when they would not fit `dst`. */
export function compressInto(dst: Uint8Array, src: Uint8Array, level: number): number {
  cctx ??= new (binding().CCtx)();
  return cctx.compress(dst, src, level);
}
