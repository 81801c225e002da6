import { crc32 } from 'node:zlib';
import { LEAF_SIZE, isZero, leafDigests, nameFromLeafDigests } from './chunks.js';
import { compressInto, decompressInto } from './zstd-into.js';

/**
 * Leaf-framed blobs: how a plain (not encrypted) store of format 3 or 4 keeps a blob, so that a patched chunk is
 * rebuilt from the leaves the patch touches alone (delta-frame.ts patchChain) (docs/design-delta-points.md, stage 2). A cdp point under scattered
 * writes patches thousands of chunks a few leaves each; stored as one zstd frame, each rebuild decompressed,
 * hashed, compressed and copied the whole chunk (P5 profile: the vault's two workers spent ~40% of their time in
 * SHA-256 and ~40% in zstd for 16 KiB written per 256 KiB chunk). Framed, the rebuild checks the base's stored bytes
 * with CRC-32 (~2.5 times SHA-256's speed), decodes, patches, hashes and compresses only the touched leaves, and
 * copies the other leaves' stored bytes as they are; the new name follows from the base's digests and the new ones.
 *
 * Layout (n = the leaves of the raw bytes, the last may be shorter than LEAF_SIZE), all integers little-endian:
 *   n x 32  SHA-256 of each raw leaf: the blob's name is nameFromLeafDigests(raw length, these)
 *   n x 4   u32: bit 31 set when the leaf is stored zstd-compressed; bits 0-30 its stored length
 *   n x 4   u32: CRC-32 of the leaf's stored bytes
 *   the leaves' stored bytes, in order
 * Reading a framed blob decodes every leaf and checks the name from digests computed afresh, and the stored digests
 * against them, as any read checks a blob: the CRCs only guard the rebuild's copying (a flipped byte in a copied leaf
 * would otherwise pass into the new chunk unseen), and a damaged CRC only sends a rebuild down the slow path; verify
 * checks them too (crcProblem), since every stored byte it cannot vouch for is damage a repair must replace.
 */

export const COMPRESSED_BIT = 0x80000000;
/** A leaf's length word in a delta blob (delta-frame.ts) whose bytes are its base's: no stored bytes, CRC 0. */
export const FROM_BASE = 0xffffffff;
export const ENTRY = 32 + 4 + 4;

export const leafCount = (rawLength: number): number => Math.max(1, Math.ceil(rawLength / LEAF_SIZE));
/** The largest a framed blob of `rawLength` bytes can be (every leaf stored as it is). */
export const framedBound = (rawLength: number): number => rawLength + leafCount(rawLength) * ENTRY;

/** Leaf `i`'s raw byte range within a blob of `rawLength` bytes. */
export const leafRange = (i: number, rawLength: number): [number, number] => [i * LEAF_SIZE, Math.min(rawLength, (i + 1) * LEAF_SIZE)];

export interface Frame {
  n: number;
  digests: Buffer;
  /** Where each leaf's stored bytes start in the blob, and end (the next one's start); compressed or not. */
  starts: number[];
  ends: number[];
  compressed: boolean[];
  crcs: number[];
  /** Leaves a delta blob takes from its base (delta-frame.ts); none in a framed blob. */
  fromBase: boolean[];
}

/**
 * The frame of a stored blob of `rawLength` raw bytes, or why it cannot be one. `deltas`: leaves may be marked
 * FROM_BASE (the frame of a delta blob, after its prefix).
 */
export function parseFrame(stored: Buffer, rawLength: number, deltas = false): Frame | string {
  const n = leafCount(rawLength);
  const header = n * ENTRY;
  if (stored.length < header) return `is ${stored.length} bytes, shorter than its leaf frame's header (${header})`;
  const starts: number[] = [];
  const ends: number[] = [];
  const compressed: boolean[] = [];
  const crcs: number[] = [];
  const fromBase: boolean[] = [];
  let at = header;
  for (let i = 0; i < n; i++) {
    const word = stored.readUInt32LE(n * 32 + i * 4);
    fromBase.push(deltas && word === FROM_BASE);
    if (fromBase[i]) {
      starts.push(at);
      ends.push(at);
      compressed.push(false);
      crcs.push(0);
      continue;
    }
    const length = word & ~COMPRESSED_BIT;
    const [from, to] = leafRange(i, rawLength);
    const packed = (word & COMPRESSED_BIT) !== 0;
    if (packed ? length >= to - from : length !== to - from) return `leaf ${i} claims ${length} stored bytes for ${to - from} raw ${packed ? '(compressed)' : ''}`;
    starts.push(at);
    ends.push((at += length));
    compressed.push(packed);
    crcs.push(stored.readUInt32LE(n * 36 + i * 4));
  }
  if (at !== stored.length) return `has ${stored.length} bytes where its leaf frame accounts for ${at}`;
  return { n, digests: stored.subarray(0, n * 32), starts, ends, compressed, crcs, fromBase };
}

/**
 * The first leaf whose stored bytes do not match their CRC-32, or undefined. Reads do not need it (they check every
 * leaf's digest), but verify does: a flipped byte in a CRC leaves the data readable and would only send a rebuild
 * down its slow path, yet it is damage to the stored bytes that a store check must report and a repair replace.
 */
export function crcProblem(stored: Buffer, frame: Frame): string | undefined {
  for (let i = 0; i < frame.n; i++) {
    if (frame.fromBase[i]) continue;
    if (!leafCrcOk(stored, frame, i)) return `leaf ${i}'s stored bytes do not match their CRC-32`;
  }
  return undefined;
}

/** Whether leaf `i`'s stored bytes match the CRC-32 its frame gives them. */
export const leafCrcOk = (stored: Buffer, frame: Frame, i: number): boolean => crc32(stored.subarray(frame.starts[i], frame.ends[i])) === frame.crcs[i];

/** Leaf `i` of `frame` decoded into `out` (the raw blob's buffer, at the leaf's place); false when it does not decode. */
export function decodeLeaf(stored: Buffer, frame: Frame, i: number, out: Buffer, rawLength: number): boolean {
  return decodeLeafTo(stored, frame, i, out.subarray(...leafRange(i, rawLength)));
}

/** Leaf `i` of `frame` decoded into `target`, exactly the leaf's raw length; false when it does not decode. */
export function decodeLeafTo(stored: Buffer, frame: Frame, i: number, target: Buffer): boolean {
  const body = stored.subarray(frame.starts[i], frame.ends[i]);
  if (!frame.compressed[i]) return body.length === target.length && body.copy(target) === target.length;
  try {
    return decompressInto(target, body) === target.length;
  } catch {
    return false;
  }
}

/** Writes leaf `leaf` (raw bytes) stored, compressed when that saves 1/16, at `out[at]`; returns its header word. */
export function encodeLeaf(leaf: Buffer, level: number, tryCompress: boolean, out: Buffer, at: number): number {
  if (tryCompress && level > 0 && leaf.length >= 512) {
    try {
      // Room for 15/16 of the leaf only: a leaf that would not save that fails fast and is stored as it is.
      const n = compressInto(out.subarray(at, at + leaf.length - Math.ceil(leaf.length / 16)), leaf, level);
      return (n | COMPRESSED_BIT) >>> 0;
    } catch {
      // "Destination buffer is too small": not worth it
    }
  }
  return leaf.copy(out, at);
}

/**
 * `raw` framed into `out` from `at` (room for framedBound); returns the stored length. `digests` are the raw bytes'
 * leaf digests when the caller has them; `tryCompress` false stores every leaf but zero ones as it is (incompressible
 * data, found by the caller's sample).
 */
export function encodeFramedInto(raw: Buffer, level: number, tryCompress: boolean, out: Buffer, at: number, digests?: Uint8Array): number {
  const n = leafCount(raw.length);
  const d = out.subarray(at, at + n * 32);
  if (digests) d.set(digests);
  else leafDigests(raw, d);
  let body = at + n * ENTRY;
  for (let i = 0; i < n; i++) {
    const [from, to] = leafRange(i, raw.length);
    const leaf = raw.subarray(from, to);
    // A leaf of zeros is always worth it (a few bytes), whatever the sample said of the chunk.
    const word = encodeLeaf(leaf, level, tryCompress || isZero(leaf), out, body);
    const length = word & ~COMPRESSED_BIT;
    out.writeUInt32LE(word, at + n * 32 + i * 4);
    out.writeUInt32LE(crc32(out.subarray(body, body + length)), at + n * 36 + i * 4);
    body += length;
  }
  return body - at;
}

/** As encodeFramedInto, into a buffer of its own. */
export function encodeFramed(raw: Buffer, level: number, tryCompress: boolean, digests?: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(framedBound(raw.length));
  return out.subarray(0, encodeFramedInto(raw, level, tryCompress, out, 0, digests));
}

/**
 * The raw bytes of a framed blob (into `into` when given, at least `rawLength` long), or why they cannot be had.
 * With `check`, the digests of the decoded leaves must give `check` (the blob's name) and equal the stored ones;
 * with `crcs`, the leaves' stored bytes must match their CRC-32s too (crcProblem).
 */
export function decodeFramed(stored: Buffer, rawLength: number, check: string | null, into?: Buffer, crcs = false): Buffer | string {
  const frame = parseFrame(stored, rawLength);
  if (typeof frame === 'string') return frame;
  const crc = crcs ? crcProblem(stored, frame) : undefined;
  if (crc) return crc;
  const out = into && into.length >= rawLength ? into.subarray(0, rawLength) : Buffer.allocUnsafe(rawLength);
  for (let i = 0; i < frame.n; i++) if (!decodeLeaf(stored, frame, i, out, rawLength)) return `leaf ${i} does not decode to its length`;
  if (check !== null) {
    const digests = leafDigests(out);
    if (nameFromLeafDigests(rawLength, digests) !== check) return 'bytes do not hash to the blob name';
    if (!digests.equals(frame.digests)) return 'its stored leaf digests do not match its bytes';
  }
  return out;
}

/** Per leaf a patch's runs touch, how many of its bytes they write (runs do not overlap). */
export function touchedLeaves(runs: readonly [number, number, number][], chunkLength: number): Map<number, number> {
  const touched = new Map<number, number>();
  for (const [offset, length] of runs) {
    for (let i = Math.floor(offset / LEAF_SIZE); i <= Math.floor((offset + length - 1) / LEAF_SIZE); i++) {
      const [from, to] = leafRange(i, chunkLength);
      touched.set(i, (touched.get(i) ?? 0) + Math.min(to, offset + length) - Math.max(from, offset));
    }
  }
  return touched;
}

/**
 * What a rebuild leaf by leaf (delta-frame.ts patchChain) answers: the stored length and the new name; a refusal the
 * sender caused ('patch', 'zero'); or `slow` with the reason it cannot vouch for the result (a base whose stored bytes
 * or digests do not check out, or a name other than the claimed one): the caller then rebuilds from the base decoded
 * and checked whole, which tells a damaged base from a wrong patch.
 */
export type FramedPatch = { stored: number; hash: string } | { problem: 'patch' | 'zero'; message: string } | { slow: string };
