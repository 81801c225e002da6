import { describe, expect, it } from 'vitest';
import { forEachLimit } from '../../../src/core/concurrency.js';

const tick = () => new Promise((r) => setTimeout(r, 1));

/**
 * forEachLimit over arrays and over async iterables (the replicator stores a chunk batch's entries as the body
 * yields them): never more than `limit` calls at once, the first failure rejects once the calls under way
 * settled, and an async iterable stopped by a failure is closed rather than left suspended.
 */
describe('forEachLimit', () => {
  it('runs every item of an array with at most `limit` in flight', async () => {
    let running = 0;
    let most = 0;
    const seen: number[] = [];
    await forEachLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      most = Math.max(most, ++running);
      await tick();
      seen.push(n);
      running--;
    });
    expect(seen.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(most).toBe(3);
  });

  it('consumes an async iterable as it yields, and on a failure settles the calls under way and closes it', async () => {
    let closed = false;
    let yielded = 0;
    async function* items() {
      try {
        for (let n = 0; n < 100; n++) {
          await tick();
          yielded++;
          yield n;
        }
      } finally {
        closed = true;
      }
    }
    const settled: number[] = [];
    const run = forEachLimit(items(), 4, async (n) => {
      await tick();
      if (n === 5) throw new Error('entry 5 failed');
      await tick();
      settled.push(n);
    });
    await expect(run).rejects.toThrow('entry 5 failed');
    expect(closed).toBe(true);
    expect(yielded).toBeLessThan(100); // stopped early, not drained
    expect(settled).toEqual(expect.arrayContaining([0, 1, 2, 3, 4]));
  });

  it('rejects with the iterable own failure (a body cut off mid-way) after the calls under way settled', async () => {
    async function* items() {
      yield 1;
      yield 2;
      await tick();
      throw new Error('body ended inside an entry');
    }
    const settled: number[] = [];
    await expect(forEachLimit(items(), 4, async (n) => {
      await tick();
      await tick();
      settled.push(n);
    })).rejects.toThrow('body ended inside an entry');
    expect(settled.sort()).toEqual([1, 2]);
  });
});
