import { RefugeError } from '../core/errors.js';
import type { BlobNaming } from './chunks.js';
import type { EncryptionConfig } from './sealing.js';

/**
 * `refuge-store.json`: the one object written in the clear and only at creation. It says how to read everything
 * else: the format, the chunk size, pack size and compression level for new data, and the wrapped data key.
 */
/**
 * The format of new stores (docs/store-format.md): 4 since 2026-12-03 evening (delta blobs, docs/design-delta-points.md
 * stage 3), 3 before that day's afternoon (stage 5), 2 before.
 */
export const STORE_FORMAT = 4;
/**
 * The formats this Refuge reads and writes: 2, blobs named by SHA-256 and stored whole; 3, named by leaf digests
 * (chunks.ts `leaf16`) and, in a plain store, stored leaf-framed (leaf-frame.ts), so that a cdp point's work follows
 * the bytes written rather than the chunks touched; 4, format 3 with delta blobs (hasDeltas). A store keeps the format
 * it was made with.
 */
export const STORE_FORMATS = [2, 3, 4] as const;
export type StoreFormat = (typeof STORE_FORMATS)[number];
export const CONFIG_KEY = 'refuge-store.json';

export const namingOf = (format: StoreFormat): BlobNaming => (format >= 3 ? 'leaf16' : 'sha256');
/**
 * Format 4 is format 3 plus delta blobs (delta-frame.ts): a plain store keeps a patched chunk as the leaves its patch
 * touched, read through its base (docs/design-delta-points.md, stage 3).
 */
export const hasDeltas = (format: StoreFormat): boolean => format === 4;

export interface StoreConfig {
  format: StoreFormat;
  chunkSize: number;
  /** Target size of a pack; a pack is written once its blobs reach it. */
  packSize: number;
  /** zstd level for new blobs; 0 stores everything uncompressed. */
  compressionLevel: number;
  createdAt: string;
  encryption: EncryptionConfig | null;
}

export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
export const DEFAULT_COMPRESSION_LEVEL = 3;

export const MIN_CHUNK_SIZE = 4096;
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
export const usableChunkSize = (n: number): boolean => Number.isInteger(n) && n >= MIN_CHUNK_SIZE && n <= MAX_CHUNK_SIZE && (n & (n - 1)) === 0;

export function checkConfig(c: StoreConfig, location: string): StoreConfig {
  const format: unknown = c.format;
  if (!(STORE_FORMATS as readonly unknown[]).includes(format)) {
    throw new RefugeError('failed_precondition', `replica store at ${location} has format ${String(format)}; this Refuge reads formats ${STORE_FORMATS.join(', ')}`);
  }
  const ok =
    usableChunkSize(c.chunkSize) &&
    Number.isInteger(c.packSize) && c.packSize >= 4096 && c.packSize <= 1024 * 1024 * 1024 &&
    Number.isInteger(c.compressionLevel) && c.compressionLevel >= 0 && c.compressionLevel <= 19;
  if (!ok) throw new RefugeError('failed_precondition', `replica store at ${location} has an unusable config`, { details: { object: CONFIG_KEY } });
  return c;
}
