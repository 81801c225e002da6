import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PointManifest } from '../../../src/store/manifest.js';
import { CHUNK, commitDisk, expectSameBytes, hashChunks, openTempStore, seededBytes, storedChunkHashes } from './fixtures.js';

/**
 * Model-based check of the whole store: a disk is an in-memory Buffer that random writes change between points;
 * each point is committed the way the agent commits it (only chunks whose hash differs from the previous scan,
 * only chunks the store lacks uploaded). Afterwards every point, not just the last, must restore to the snapshot
 * taken when it was committed, which catches a change applied to the wrong point or a chunk shared wrongly.
 */

type Fill = { kind: 'zeros' } | { kind: 'byte'; value: number } | { kind: 'random'; seed: number };
interface Write {
  offset: number;
  length: number;
  fill: Fill;
}

// Zeros and repeated bytes make chunks return to earlier contents (zero chunks, chunks shared across points).
const fillArb: fc.Arbitrary<Fill> = fc.oneof(
  fc.constant({ kind: 'zeros' as const }),
  fc.record({ kind: fc.constant('byte' as const), value: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('random' as const), seed: fc.integer() }),
);

const writeArb = (size: number): fc.Arbitrary<Write> =>
  fc
    .record({ offset: fc.nat({ max: size - 1 }), length: fc.integer({ min: 1, max: 3 * CHUNK }), fill: fillArb })
    .map((w) => ({ ...w, length: Math.min(w.length, size - w.offset) }));

const scenarioArb = fc
  .oneof(
    fc.integer({ min: 2, max: 40 }).map((n) => n * CHUNK), // chunk-aligned disk
    fc.integer({ min: CHUNK + 1, max: 40 * CHUNK - 1 }), // usually a short last chunk
  )
  .chain((size) =>
    fc.record({
      size: fc.constant(size),
      // An empty list of writes is a point with no changes at all.
      points: fc.array(fc.array(writeArb(size), { maxLength: 5 }), { minLength: 1, maxLength: 8 }),
      reads: fc.array(fc.tuple(fc.nat({ max: size - 1 }), fc.nat({ max: 3 * CHUNK })), { minLength: 1, maxLength: 4 }),
    }),
  );

function applyWrite(disk: Buffer, w: Write): void {
  const target = disk.subarray(w.offset, w.offset + w.length);
  if (w.fill.kind === 'zeros') target.fill(0);
  else if (w.fill.kind === 'byte') target.fill(w.fill.value);
  else seededBytes(w.fill.seed, w.length).copy(target);
}

describe('ReplicaStore (property)', () => {
  it('restores every point of a random write history byte for byte', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ size, points, reads }) => {
        const t = await openTempStore(CHUNK);
        try {
          const model = Buffer.alloc(size);
          const history: { id: string; snapshot: Buffer }[] = [];
          let parent: PointManifest | null = null;
          let previous: (string | null)[] | undefined; // the agent's own memory of the last scan
          const t0 = Date.now();
          for (const writes of points) {
            for (const w of writes) applyWrite(model, w);
            const { point, changes } = await commitDisk(t.store, model, {
              parent,
              previous,
              capturedAt: new Date(t0 + history.length * 1000),
            });
            previous = hashChunks(model, CHUNK);
            expect(await t.store.diskChunks(point, 'disk0')).toEqual(previous);
            expect(point.stats.changedChunks).toBe(changes.length);
            history.push({ id: point.id, snapshot: Buffer.from(model) });
            parent = point;
          }

          // Exactly the distinct non-zero chunks of all snapshots are stored: no duplicates, no zeros, no strays.
          const needed = new Set(history.flatMap((h) => hashChunks(h.snapshot, CHUNK)).filter((h) => h !== null));
          expect(await storedChunkHashes(t.store)).toEqual([...needed].sort());
          expect(await t.store.listPointIds('rep_test')).toEqual(history.map((h) => h.id));

          for (const [n, { id, snapshot }] of history.entries()) {
            const point = await t.store.getPoint('rep_test', id);
            await t.store.materialize(point, 'disk0', t.imagePath(`p${n}.img`));
            expectSameBytes(await readFile(t.imagePath(`p${n}.img`)), snapshot, `point ${n} image`);
            for (const [offset, wanted] of reads) {
              const length = Math.min(wanted, size - offset);
              const got = await t.store.readRange(point, 'disk0', offset, length);
              expectSameBytes(got, snapshot.subarray(offset, offset + length), `point ${n} range ${offset}+${length}`);
            }
          }
        } finally {
          await t.dir.cleanup();
        }
      }),
      { numRuns: 40 },
    );
  });
});
