import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodePatch, type Run } from '../../../src/protocol/chunk-encoding.js';
import { LEAF_SIZE, applyPatch, blobName } from '../../../src/store/chunks.js';
import { DELTA_PREFIX, MAX_DELTA_DEPTH, decodeChain, deltaBound, deltaHead, patchChain } from '../../../src/store/delta-frame.js';
import { BLOB_DELTA, BLOB_LEAVES } from '../../../src/store/blob-codec.js';
import { decodeIndexFile, encodeIndexFile } from '../../../src/store/index-file.js';
import { decodeFramed, encodeFramed } from '../../../src/store/leaf-frame.js';
import { PackBuilder, parsePack } from '../../../src/store/pack.js';
import { expectSameBytes, framedLeafBytes } from './fixtures.js';

const K = 1024;
const CHUNK = 256 * K;
const name = (b: Buffer) => blobName(b, 'leaf16');

/** Random leaves, text-like leaves and zero leaves, as a disk holds them. */
function mixedChunk(): Buffer {
  const b = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK / LEAF_SIZE; i++) {
    if (i % 4 === 0) randomBytes(LEAF_SIZE).copy(b, i * LEAF_SIZE);
    else if (i % 4 === 1) b.fill(`leaf ${i} says hello; `, i * LEAF_SIZE, (i + 1) * LEAF_SIZE);
  }
  return b;
}

/** A patch writing `runs` ([offset, length]) of random bytes, and the chunk it makes of `raw`. */
function patchOf(raw: Buffer, runs: [number, number][]): { patch: Buffer; after: Buffer } {
  const written: Run[] = runs;
  const after = Buffer.from(raw);
  for (const [offset, length] of runs) randomBytes(length).copy(after, offset);
  const patch = encodePatch(after, written);
  expectSameBytes(applyPatch(raw, patch, CHUNK), after);
  return { patch, after };
}

/** A delta of `chain` (the base first) by `patch`, which must make `after`; its stored bytes. */
function delta(chain: Buffer[], base: Buffer, patch: Buffer, after: Buffer): Buffer {
  const out = Buffer.alloc(deltaBound(CHUNK) + 16);
  const r = patchChain(chain, name(base), CHUNK, patch, name(after), 3, out, 16, Buffer.alloc(CHUNK));
  if (!('stored' in r)) throw new Error(`no delta: ${JSON.stringify(r)}`);
  expect(r.hash).toBe(name(after));
  return Buffer.from(out.subarray(16, 16 + r.stored));
}

/** Where leaf `i`'s stored bytes lie in a framed chunk. */
const leafBytes = (stored: Buffer, i: number): Buffer => framedLeafBytes(stored, CHUNK, i);

describe('delta blobs', () => {
  it('store only the leaves a patch touches, and a chain decodes to the patched bytes, checked', () => {
    const root = mixedChunk();
    const framed = encodeFramed(root, 3, true);
    // Two 8 KiB writes: one inside leaf 3, one across leaves 6 and 7.
    const { patch, after } = patchOf(root, [[3 * LEAF_SIZE + 4 * K, 8 * K], [7 * LEAF_SIZE - 4 * K, 8 * K]]);
    const d = delta([framed], root, patch, after);
    expect(deltaHead(d)).toEqual({ base: name(root), depth: 1 });
    // The prefix, the frame's table, and three leaves of mostly random bytes.
    expect(d.length).toBeLessThanOrEqual(DELTA_PREFIX + 16 * 40 + 3 * LEAF_SIZE);
    expect(d.length).toBeLessThan(framed.length / 2);
    expectSameBytes(decodeChain([d, framed], CHUNK, name(after)) as Buffer, after);
    const into = Buffer.alloc(CHUNK);
    expect((decodeChain([d, framed], CHUNK, name(after), into) as Buffer).buffer).toBe(into.buffer);
  });

  it('chain up to MAX_DELTA_DEPTH; a patch on a base that deep is declined (the caller stores it framed)', () => {
    let raw = mixedChunk();
    const chain = [encodeFramed(raw, 3, true)];
    for (let depth = 1; depth <= MAX_DELTA_DEPTH; depth++) {
      const { patch, after } = patchOf(raw, [[(depth * 5 % 16) * LEAF_SIZE + 100, 5000]]);
      const d = delta(chain, raw, patch, after);
      expect(deltaHead(d)).toEqual({ base: name(raw), depth });
      chain.unshift(d);
      raw = after;
      expectSameBytes(decodeChain(chain, CHUNK, name(raw)) as Buffer, raw);
    }
    const { patch, after } = patchOf(raw, [[0, 10]]);
    const r = patchChain(chain, name(raw), CHUNK, patch, name(after), 3, Buffer.alloc(deltaBound(CHUNK)), 0, Buffer.alloc(CHUNK));
    expect(r).toEqual({ slow: `the base is ${MAX_DELTA_DEPTH} deep already` });
  });

  it('cut a chain short: the patched chunk framed whole, its untouched leaves copied from their holders by CRC', () => {
    let raw = mixedChunk();
    const chain = [encodeFramed(raw, 3, true)];
    for (let depth = 1; depth <= 3; depth++) {
      const { patch, after } = patchOf(raw, [[depth * 3 * LEAF_SIZE + 10, 3000]]);
      chain.unshift(delta(chain, raw, patch, after));
      raw = after;
    }
    const { patch, after } = patchOf(raw, [[LEAF_SIZE + 5, 9000]]);
    const out = Buffer.alloc(deltaBound(CHUNK));
    const r = patchChain(chain, name(raw), CHUNK, patch, name(after), 3, out, 0, Buffer.alloc(CHUNK), true);
    if (!('stored' in r)) throw new Error(JSON.stringify(r));
    expectSameBytes(decodeFramed(out.subarray(0, r.stored), CHUNK, name(after)) as Buffer, after);
    // A copied leaf whose CRC fails (here in the chain's framed root) is not copied: the caller decodes and checks all.
    const root = Buffer.from(chain.at(-1) as Buffer);
    const leaf = leafBytes(root, 2);
    leaf.writeUInt8(leaf.readUInt8(7) ^ 1, 7);
    expect(patchChain([...chain.slice(0, -1), root], name(raw), CHUNK, patch, name(after), 3, out, 0, Buffer.alloc(CHUNK), true)).toEqual({ slow: "the base's leaf 2 fails its CRC" });
  });

  it('read only the leaves written in part: damage elsewhere is found when the chain is read, not copied unseen', () => {
    const root = mixedChunk();
    const framed = encodeFramed(root, 3, true);
    // Leaf 2 is overwritten whole, leaf 4 in part; leaf 8 is not touched.
    const { patch, after } = patchOf(root, [[2 * LEAF_SIZE, LEAF_SIZE], [4 * LEAF_SIZE + 10, 20]]);
    const damaged = (i: number) => {
      const b = Buffer.from(framed);
      const leaf = leafBytes(b, i);
      const at = Math.floor(leaf.length / 2);
      leaf.writeUInt8(leaf.readUInt8(at) ^ 0x40, at);
      return b;
    };
    // A damaged leaf the patch overwrites whole is not read: the delta is right and reads back right.
    const d2 = delta([damaged(2)], root, patch, after);
    expectSameBytes(decodeChain([d2, damaged(2)], CHUNK, name(after)) as Buffer, after);
    // One written in part is read, and its CRC sends the rebuild down the checked path.
    const r = patchChain([damaged(4)], name(root), CHUNK, patch, name(after), 3, Buffer.alloc(deltaBound(CHUNK)), 0, Buffer.alloc(CHUNK));
    expect(r).toEqual({ slow: "the base's leaf 4 fails its CRC" });
    // One the patch does not touch is referred to: reading the delta names it, in the member that holds it.
    const d8 = delta([damaged(8)], root, patch, after);
    expect(decodeChain([d8, damaged(8)], CHUNK, name(after))).toMatch(/^leaf 8 (does not hash to its digest \(stored in member 1 of its chain\)|does not decode)/);
    expectSameBytes(decodeChain([d8, framed], CHUNK, name(after)) as Buffer, after);
  });

  it('decline a wrong claim or a base that is not what its name says; refuse a zero result or a bad patch', () => {
    const root = mixedChunk();
    const framed = encodeFramed(root, 3, true);
    const { patch, after } = patchOf(root, [[100, 200]]);
    const out = Buffer.alloc(deltaBound(CHUNK));
    const scratch = Buffer.alloc(CHUNK);
    expect(patchChain([framed], name(root), CHUNK, patch, name(root), 3, out, 0, scratch)).toEqual({ slow: 'the patched chunk does not have the claimed name' });
    expect(patchChain([framed], name(after), CHUNK, patch, name(after), 3, out, 0, scratch)).toEqual({ slow: "the base's stored leaf digests do not give its name" });
    expect(patchChain([framed], name(root), CHUNK, Buffer.from([0, 0, 0]), name(after), 3, out, 0, scratch)).toMatchObject({ problem: 'patch' });
    const zero = Buffer.alloc(CHUNK);
    const small = Buffer.alloc(CHUNK);
    small.write('x', 5);
    const toZero = patchOf(small, [[5, 1]]);
    const z = Buffer.from(toZero.patch);
    z[8] = 0; // the run's one byte: zero, as the base's others
    expect(patchChain([encodeFramed(small, 3, true)], name(small), CHUNK, z, name(zero), 3, out, 0, scratch)).toEqual({ problem: 'zero', message: 'the patch rebuilds a chunk of zeros' });
  });

  it('name what is wrong with a chain', () => {
    const root = mixedChunk();
    const framed = encodeFramed(root, 3, true);
    const { patch, after } = patchOf(root, [[100, 200]]);
    const d = delta([framed], root, patch, after);
    expect(deltaHead(d.subarray(0, 10))).toBe('is 10 bytes, shorter than a delta\'s prefix');
    const deep = Buffer.from(d);
    deep[32] = 9;
    expect(deltaHead(deep)).toBe(`claims depth 9, outside 1..${MAX_DELTA_DEPTH}`);
    expect(decodeChain([d], CHUNK, null)).toMatch(/^member 0 /); // a delta without its base
    expect(decodeChain([d, d, framed], CHUNK, null)).toBe('member 0 claims depth 1 in a chain of 3');
    expect(decodeChain([], CHUNK, null)).toBe('a chain of 0 blobs');
    expect(decodeChain([d, framed], CHUNK, name(root))).toBe('its leaf digests do not give the blob name');
  });

  it('carry their base in pack headers and index files, so a chain is found from the index alone', () => {
    const root = mixedChunk();
    const framed = encodeFramed(root, 3, true);
    const { patch, after } = patchOf(root, [[100, 200]]);
    const d = delta([framed], root, patch, after);
    for (const key of [null, randomBytes(32)]) {
      const builder = new PackBuilder();
      builder.add('data', name(root), { stored: framed, flags: BLOB_LEAVES, rawLength: CHUNK });
      builder.add('data', name(after), { stored: d, flags: BLOB_DELTA, rawLength: CHUNK, base: name(root) });
      builder.add('tree', name(Buffer.from('node')), { stored: Buffer.from('node'), flags: 0, rawLength: 4 });
      const { info, data } = builder.finish(key);
      const parsed = parsePack(data, info.id, key);
      expect(parsed.blobs.map((b) => b.base)).toEqual([undefined, name(root), undefined]);
      expect(parsed.blobs).toEqual(info.blobs);
      const index = encodeIndexFile([info], key);
      expect(decodeIndexFile(index.data, index.name, key)[0]?.blobs).toEqual(info.blobs);
    }
    const builder = new PackBuilder();
    builder.add('data', name(after), { stored: d, flags: BLOB_DELTA, rawLength: CHUNK });
    expect(() => builder.finish(null)).toThrow(`delta blob ${name(after)} has no base`);
  });
});
