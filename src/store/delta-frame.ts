import { crc32 } from 'node:zlib';
import { LEAF_SIZE, isZero, leafDigests, nameFromLeafDigests, patchRuns, zeroDigests } from './chunks.js';
import { COMPRESSED_BIT, ENTRY, FROM_BASE, crcProblem, decodeLeaf, decodeLeafTo, encodeLeaf, leafCount, leafCrcOk, leafRange, parseFrame, touchedLeaves, type Frame, type FramedPatch } from './leaf-frame.js';

/**
 * Delta blobs (docs/design-delta-points.md, stage 3): a patched chunk stored as the leaves its patch touched, the
 * others taken from its base, so that the vault writes in proportion to the bytes written rather than to the chunks
 * they fall in. Under P5's scattered writes a leaf-framed rebuild still wrote each touched 256 KiB chunk whole, ~1.2 GB
 * a point, and on these machines every new page of page cache costs a fault in the host (2 s a GiB measured): the
 * vault's writing threads took half a core. A delta of a chunk with one or two leaves written is ~17-35 KB.
 *
 * Layout, all integers little-endian:
 *   32      the base's name (binary): the chunk this one patched, itself framed or a delta
 *   u8      depth: 1 + the base's depth (a framed blob has depth 0); at most MAX_DELTA_DEPTH
 *   a leaf frame (leaf-frame.ts) of the chunk's raw bytes, in which a leaf taken from the base has the length word
 *   FROM_BASE, CRC 0 and no stored bytes. Its digests are those of every leaf of the chunk, so the blob's name
 *   follows from its own frame, as a framed blob's does.
 *
 * A *chain* is a delta, its base, the base's base and so on down to a framed blob: the stored bytes of each, newest
 * first. Leaf i is read from the first member of the chain that stores it. Reading checks every leaf against the
 * newest member's digests and those against the name, so a damaged base is seen as damage in every delta reading
 * through it (the depth bounds how many: MAX_DELTA_DEPTH); rebuilding reads only the leaves a patch writes in part,
 * each checked by its CRC, and refers to the rest.
 */

export const DELTA_PREFIX = 33;
/** Chains no longer than this: a patch on a base this deep is stored framed, whole (a read walks at most 9 blobs). */
export const MAX_DELTA_DEPTH = 8;

/** The base and depth a delta's stored bytes name, or why they cannot be a delta. */
export function deltaHead(stored: Buffer): { base: string; depth: number } | string {
  if (stored.length < DELTA_PREFIX) return `is ${stored.length} bytes, shorter than a delta's prefix`;
  const depth = stored.readUInt8(32);
  if (depth < 1 || depth > MAX_DELTA_DEPTH) return `claims depth ${depth}, outside 1..${MAX_DELTA_DEPTH}`;
  return { base: stored.toString('hex', 0, 32), depth };
}

/** The largest a delta of a `rawLength` chunk can be (every leaf stored as it is). */
export const deltaBound = (rawLength: number): number => DELTA_PREFIX + rawLength + leafCount(rawLength) * ENTRY;

interface Member {
  frame: Frame;
  /** The stored bytes the frame's offsets count from (a delta's without its prefix). */
  body: Buffer;
}

/** The chain's frames (the last member is framed, the others deltas), or why one is not what it should be. */
function membersOf(chain: readonly Buffer[], rawLength: number): Member[] | string {
  if (chain.length === 0 || chain.length > MAX_DELTA_DEPTH + 1) return `a chain of ${chain.length} blobs`;
  const members: Member[] = [];
  for (const [k, stored] of chain.entries()) {
    const last = k === chain.length - 1;
    if (!last) {
      const head = deltaHead(stored);
      if (typeof head === 'string') return `member ${k} ${head}`;
      if (head.depth !== chain.length - 1 - k) return `member ${k} claims depth ${head.depth} in a chain of ${chain.length}`;
    }
    const body = last ? stored : stored.subarray(DELTA_PREFIX);
    const frame = parseFrame(body, rawLength, !last);
    if (typeof frame === 'string') return `member ${k} ${frame}`;
    members.push({ frame, body });
  }
  return members;
}

/** The member that stores leaf `i` (the first one not taking it from its base). */
const holderOf = (members: readonly Member[], i: number): Member | undefined => members.find((m) => !m.frame.fromBase[i]);

/**
 * The raw bytes of the chain's newest member (into `into` when at least `rawLength` long), or why they cannot be
 * had. With `check` (the newest member's name), every leaf must hash to its digest and the digests give the name.
 */
export function decodeChain(chain: readonly Buffer[], rawLength: number, check: string | null, into?: Buffer): Buffer | string {
  const members = membersOf(chain, rawLength);
  if (typeof members === 'string') return members;
  const newest = members[0] as Member;
  const out = into && into.length >= rawLength ? into.subarray(0, rawLength) : Buffer.allocUnsafe(rawLength);
  for (let i = 0; i < newest.frame.n; i++) {
    const holder = holderOf(members, i);
    if (!holder || !decodeLeaf(holder.body, holder.frame, i, out, rawLength)) return `leaf ${i} does not decode to its length`;
  }
  if (check !== null) {
    if (nameFromLeafDigests(rawLength, newest.frame.digests) !== check) return 'its leaf digests do not give the blob name';
    const digests = leafDigests(out);
    for (let i = 0; i < newest.frame.n; i++) {
      if (!digests.subarray(i * 32, i * 32 + 32).equals(newest.frame.digests.subarray(i * 32, i * 32 + 32))) {
        return `leaf ${i} does not hash to its digest${holderOf(members, i) === newest ? '' : ` (stored in member ${members.indexOf(holderOf(members, i) as Member)} of its chain)`}`;
      }
    }
  }
  return out;
}

/**
 * What can be checked of a delta without its base (verify and garbage collection check blobs pack by pack): its
 * prefix and frame parse, its digests give `check`, and every leaf it stores decodes and hashes to its digest.
 * Undefined when sound. Its other leaves are checked with the blobs that store them.
 */
export function checkDeltaAlone(stored: Buffer, rawLength: number, check: string): string | undefined {
  const head = deltaHead(stored);
  if (typeof head === 'string') return head;
  const body = stored.subarray(DELTA_PREFIX);
  const frame = parseFrame(body, rawLength, true);
  if (typeof frame === 'string') return frame;
  if (nameFromLeafDigests(rawLength, frame.digests) !== check) return 'its leaf digests do not give the blob name';
  const crc = crcProblem(body, frame);
  if (crc) return crc;
  const leaf = Buffer.allocUnsafe(Math.min(rawLength, LEAF_SIZE));
  for (let i = 0; i < frame.n; i++) {
    if (frame.fromBase[i]) continue;
    const [from, to] = leafRange(i, rawLength);
    if (!decodeLeafTo(body, frame, i, leaf.subarray(0, to - from))) return `leaf ${i} does not decode to its length`;
    if (!leafDigests(leaf.subarray(0, to - from)).equals(frame.digests.subarray(i * 32, i * 32 + 32))) return `leaf ${i} does not hash to its digest`;
  }
  return undefined;
}

/**
 * Applies `patch` to the base whose chain is `chain` (the base first, named `baseHash`, `chunkLength` raw bytes) and
 * writes the patched chunk into `out` at `at` (room for deltaBound(chunkLength)): as a delta on the base, or with
 * `whole` as a leaf-framed blob (leaf-frame.ts) that needs no base, its untouched leaves' stored bytes copied from
 * the members holding them, each checked by its CRC first (how a chain is cut short: MAX_DELTA_DEPTH). `scratch`
 * holds the touched leaves meanwhile. Leaves the patch writes whole are not read; those it writes in part are read
 * from their holder and checked by CRC. Answers a FramedPatch (leaf-frame.ts): `slow` when this path cannot vouch
 * for the result, and the caller rebuilds from the base decoded and checked whole. A plain store of format 3 rebuilds
 * every patch this way, whole, on its framed base (a chain of one).
 */
export function patchChain(chain: readonly Buffer[], baseHash: string, chunkLength: number, patch: Buffer, claimedHash: string, level: number, out: Buffer, at: number, scratch: Buffer, whole = false): FramedPatch {
  if (!whole && chain.length > MAX_DELTA_DEPTH) return { slow: `the base is ${chain.length - 1} deep already` };
  const members = membersOf(chain, chunkLength);
  if (typeof members === 'string') return { slow: members };
  let runs: [number, number, number][];
  try {
    runs = patchRuns(patch, chunkLength);
  } catch (err) {
    return { problem: 'patch', message: (err as Error).message };
  }
  const base = (members[0] as Member).frame;
  if (nameFromLeafDigests(chunkLength, base.digests) !== baseHash) return { slow: 'the base\'s stored leaf digests do not give its name' };
  const touched = touchedLeaves(runs, chunkLength);
  const raw = scratch.subarray(0, chunkLength);
  for (const [i, written] of touched) {
    const [from, to] = leafRange(i, chunkLength);
    if (written === to - from) continue; // overwritten whole: the base's bytes are not needed
    const holder = holderOf(members, i);
    if (!holder) return { slow: `no member of the base's chain stores leaf ${i}` };
    if (!leafCrcOk(holder.body, holder.frame, i)) return { slow: `the base's leaf ${i} fails its CRC` };
    if (!decodeLeaf(holder.body, holder.frame, i, raw, chunkLength)) return { slow: `the base's leaf ${i} does not decode` };
  }
  for (const [offset, length, from] of runs) patch.copy(raw, offset, from, from + length);
  const n = base.n;
  const frameAt = whole ? at : at + DELTA_PREFIX;
  const digests = out.subarray(frameAt, frameAt + n * 32);
  base.digests.copy(digests);
  for (const i of touched.keys()) leafDigests(raw.subarray(...leafRange(i, chunkLength)), digests.subarray(i * 32, i * 32 + 32));
  if (digests.equals(zeroDigests(chunkLength))) return { problem: 'zero', message: 'the patch rebuilds a chunk of zeros' };
  const hash = nameFromLeafDigests(chunkLength, digests);
  if (hash !== claimedHash) return { slow: 'the patched chunk does not have the claimed name' };
  if (!whole) {
    out.write(baseHash, at, 32, 'hex');
    out.writeUInt8(chain.length, at + 32);
  }
  let body = frameAt + n * ENTRY;
  for (let i = 0; i < n; i++) {
    const written = touched.get(i);
    if (written === undefined && !whole) {
      out.writeUInt32LE(FROM_BASE, frameAt + n * 32 + i * 4);
      out.writeUInt32LE(0, frameAt + n * 36 + i * 4);
      continue;
    }
    if (written === undefined) {
      const holder = holderOf(members, i);
      if (!holder) return { slow: `no member of the base's chain stores leaf ${i}` };
      const bytes = holder.body.subarray(holder.frame.starts[i], holder.frame.ends[i]);
      if (crc32(bytes) !== holder.frame.crcs[i]) return { slow: `the base's leaf ${i} fails its CRC` };
      bytes.copy(out, body);
      out.writeUInt32LE(((holder.frame.compressed[i] ? COMPRESSED_BIT : 0) | bytes.length) >>> 0, frameAt + n * 32 + i * 4);
      out.writeUInt32LE(holder.frame.crcs[i] as number, frameAt + n * 36 + i * 4);
      body += bytes.length;
      continue;
    }
    const [from, to] = leafRange(i, chunkLength);
    const leaf = raw.subarray(from, to);
    // A leaf of zeros compresses to a few bytes, and a leaf written whole is new data, judged afresh; a leaf written
    // in part is tried as its holder stored it (one stored as it is was incompressible, and random guest data
    // written into part of it most likely is too: trying would cost a failing zstd pass per patch).
    const holder = holderOf(members, i);
    const word = encodeLeaf(leaf, level, holder?.frame.compressed[i] === true || written === leaf.length || isZero(leaf), out, body);
    const length = word & ~COMPRESSED_BIT;
    out.writeUInt32LE(word, frameAt + n * 32 + i * 4);
    out.writeUInt32LE(crc32(out.subarray(body, body + length)), frameAt + n * 36 + i * 4);
    body += length;
  }
  return { stored: body - at, hash };
}
