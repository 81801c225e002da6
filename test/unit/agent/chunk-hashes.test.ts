import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ChunkHashes } from '../../../src/agent/chunk-hashes.js';

const hash = (n: number) => createHash('sha256').update(String(n)).digest('hex');

describe('chunk hashes of a disk', () => {
  it('keeps hashes and zero chunks, reuses freed places, and survives its saved form and the former array form', () => {
    const list: (string | null)[] = Array.from({ length: 1000 }, (_, i) => (i % 7 === 0 ? hash(i) : null));
    const h = ChunkHashes.fromList(list);
    expect(Array.from({ length: 1000 }, (_, i) => h.get(i))).toEqual(list);
    const c = h.clone();
    c.set(0, null); // freed, then reused by the next new hash
    c.set(1, hash(-1));
    c.set(7, hash(-7)); // overwritten in place
    expect([c.get(0), c.get(1), c.get(7), h.get(0), h.get(7)]).toEqual([null, hash(-1), hash(-7), hash(0), hash(7)]);
    const saved = JSON.parse(JSON.stringify(c)) as unknown;
    const back = ChunkHashes.fromJSON(saved);
    expect(back?.length).toBe(1000);
    expect(Array.from({ length: 1000 }, (_, i) => back?.get(i))).toEqual(Array.from({ length: 1000 }, (_, i) => c.get(i)));
    expect(ChunkHashes.fromJSON(list)?.get(14)).toBe(hash(14));
    expect(ChunkHashes.fromJSON({ nonsense: true })).toBeUndefined();
    expect(() => c.set(1000, hash(1))).toThrow(RangeError);
  });

  it('spans pages of slots: chunks far apart, the last one, clones independent, the saved form round trip', () => {
    const length = 3 * 4096 + 5;
    const h = new ChunkHashes(length);
    for (const i of [0, 4095, 2 * 4096 + 3, length - 1]) h.set(i, hash(i));
    const c = h.clone();
    c.set(4095, null);
    c.set(4096, hash(4096));
    expect([h.get(4095), h.get(4096), c.get(4095), c.get(4096), c.get(length - 1)]).toEqual([hash(4095), null, null, hash(4096), hash(length - 1)]);
    const back = ChunkHashes.fromJSON(JSON.parse(JSON.stringify(c)) as unknown);
    expect(Array.from({ length }, (_, i) => back?.get(i))).toEqual(Array.from({ length }, (_, i) => c.get(i)));
    expect(Array.from({ length }, (_, i) => c.get(i)).filter((x) => x !== null)).toHaveLength(4);
  });
});
