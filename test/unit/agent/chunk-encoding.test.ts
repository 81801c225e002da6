import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compressIfUseful, compressInto, decompressBounded, encodePatch, encodePatchInto, patchLength, type Run } from '../../../src/protocol/chunk-encoding.js';
import { applyPatch } from '../../../src/store/chunks.js';

/** The agent's chunk encodings: compression into a caller's buffer, only when it saves 10%, and patches. */
describe('chunk encoding', () => {
  const compressible = Buffer.concat([randomBytes(4096), Buffer.alloc(60 * 1024, 7)]);

  it('compresses into the given buffer when that saves at least 10%, and the bytes come back', () => {
    const dst = Buffer.alloc(compressible.length);
    const n = compressInto(dst, compressible);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThanOrEqual(compressible.length * 0.9);
    expect(decompressBounded(dst.subarray(0, n), compressible.length).equals(compressible)).toBe(true);
  });

  it('answers -1 for bytes that would not save 10% (random, tiny) or a buffer with no room for them', () => {
    expect(compressInto(Buffer.alloc(256 * 1024), randomBytes(256 * 1024))).toBe(-1);
    expect(compressInto(Buffer.alloc(1024), Buffer.alloc(300))).toBe(-1); // too small to be worth a frame
    expect(compressInto(Buffer.alloc(8), compressible)).toBe(-1);
    const random = randomBytes(8192);
    expect(compressIfUseful(random)).toEqual({ body: random, compressed: false });
    const { body, compressed } = compressIfUseful(compressible);
    expect(compressed).toBe(true);
    expect(decompressBounded(body, compressible.length).equals(compressible)).toBe(true);
  });

  it('judges a body over 16 KiB by its middle 4 KiB: incompressible there is sent as it is, without a full pass', () => {
    const randomMiddle = Buffer.concat([Buffer.alloc(30 * 1024, 7), randomBytes(6 * 1024), Buffer.alloc(30 * 1024, 7)]);
    expect(compressInto(Buffer.alloc(randomMiddle.length), randomMiddle)).toBe(-1); // the price: a few such bodies go uncompressed
    const compressibleMiddle = Buffer.concat([randomBytes(10 * 1024), Buffer.alloc(50 * 1024, 7)]);
    const dst = Buffer.alloc(compressibleMiddle.length);
    const n = compressInto(dst, compressibleMiddle);
    expect(n).toBeGreaterThan(0);
    expect(decompressBounded(dst.subarray(0, n), compressibleMiddle.length).equals(compressibleMiddle)).toBe(true);
  });

  it('judges a body of 4-16 KiB (a patch of one or two writes) by its middle quarter', () => {
    const randomMiddle = Buffer.concat([Buffer.alloc(3 * 1024, 7), randomBytes(2 * 1024 + 8), Buffer.alloc(3 * 1024, 7)]);
    expect(compressInto(Buffer.alloc(randomMiddle.length), randomMiddle)).toBe(-1);
    const compressibleMiddle = Buffer.concat([randomBytes(1024), Buffer.alloc(7 * 1024 + 8, 7)]);
    const dst = Buffer.alloc(compressibleMiddle.length);
    const n = compressInto(dst, compressibleMiddle);
    expect(n).toBeGreaterThan(0);
    expect(decompressBounded(dst.subarray(0, n), compressibleMiddle.length).equals(compressibleMiddle)).toBe(true);
    // Below 4 KiB the body is compressed whole: a random middle does not stop a compressible one.
    const small = Buffer.concat([Buffer.alloc(1500, 7), randomBytes(300), Buffer.alloc(1500, 7)]);
    expect(compressInto(Buffer.alloc(small.length), small)).toBeGreaterThan(0);
  });

  it('frames a patch in place as encodePatch does, and it rebuilds the chunk from its base', () => {
    const base = randomBytes(64 * 1024);
    const chunk = Buffer.from(base);
    const runs: Run[] = [[0, 10], [4096, 4096], [65535, 1]];
    for (const [offset, length] of runs) randomBytes(length).copy(chunk, offset);
    const out = Buffer.alloc(patchLength(runs) + 5);
    expect(encodePatchInto(out, chunk, runs)).toBe(patchLength(runs));
    expect(out.subarray(0, patchLength(runs)).equals(encodePatch(chunk, runs))).toBe(true);
    expect(applyPatch(base, encodePatch(chunk, runs), chunk.length).equals(chunk)).toBe(true);
  });
});
