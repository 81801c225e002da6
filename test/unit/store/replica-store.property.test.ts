import { readFile } from 'node:fs/promises';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PointManifest } from '../../../src/store/manifest.js';
import { collectGarbage } from '../../../src/store/gc.js';
import { verifyStore } from '../../../src/store/verify.js';
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
      // After each point: maybe delete an older point (by position), maybe collect garbage with no grace.
      upkeep: fc.array(fc.record({ drop: fc.option(fc.nat(), { nil: undefined }), gc: fc.boolean() }), { minLength: 8, maxLength: 8 }),
      reads: fc.array(fc.tuple(fc.nat({ max: size - 1 }), fc.nat({ max: 3 * CHUNK })), { minLength: 1, maxLength: 4 }),
    }),
  );

/** The hash of chunk `i` of a disk image (null for zeros). */
const previousOf = (disk: Buffer, i: number): string | null => hashChunks(disk.subarray(i * CHUNK, Math.min(disk.length, (i + 1) * CHUNK)), CHUNK)[0] ?? null;

function applyWrite(disk: Buffer, w: Write): void {
  const target = disk.subarray(w.offset, w.offset + w.length);
  if (w.fill.kind === 'zeros') target.fill(0);
  else if (w.fill.kind === 'byte') target.fill(w.fill.value);
  else seededBytes(w.fill.seed, w.length).copy(target);
}

describe('ReplicaStore (property)', () => {
  it('restores every point of a random write history byte for byte', { timeout: 180_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async ({ size, points, reads, upkeep }) => {
        const t = await openTempStore(CHUNK);
        try {
          const model = Buffer.alloc(size);
          const history: { id: string; snapshot: Buffer }[] = [];
          const dropped = new Set<string>();
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
            const before = history.at(-1);
            history.push({ id: point.id, snapshot: Buffer.from(model) });
            // The diff of two points is exactly the chunks whose bytes differ.
            if (before && !dropped.has(before.id)) {
              const ranges = (await t.store.diffPoints(await t.store.getPoint('rep_test', before.id), point))[0]?.ranges ?? [];
              const changedChunks = hashChunks(before.snapshot, CHUNK).flatMap((h, i) => (h !== previousOf(model, i) ? [i] : []));
              expect(ranges.flatMap((r) => Array.from({ length: Math.ceil(r.length / CHUNK) }, (_, j) => r.offset / CHUNK + j))).toEqual(changedChunks);
            }
            parent = point;
            const u = upkeep[history.length - 1];
            const older = history.slice(0, -1).filter((h) => !dropped.has(h.id));
            if (u?.drop !== undefined && older.length > 0) {
              const victim = older[u.drop % older.length] as { id: string };
              await t.store.deletePoint('rep_test', victim.id);
              dropped.add(victim.id);
            }
            if (u?.gc) await collectGarbage(t.store, { graceMs: 0, repackBelow: 0.75 });
          }

          // The distinct non-zero chunks of the remaining points are stored (exactly those while nothing was
          // deleted): no duplicates, no zeros, no strays.
          const live = history.filter((h) => !dropped.has(h.id));
          const needed = new Set(live.flatMap((h) => hashChunks(h.snapshot, CHUNK)).filter((h) => h !== null));
          const stored = await storedChunkHashes(t.store);
          if (dropped.size === 0) expect(stored).toEqual([...needed].sort());
          else expect(stored).toEqual(expect.arrayContaining([...needed]));
          expect(await t.store.listPointIds('rep_test')).toEqual(live.map((h) => h.id));
          expect((await verifyStore(t.store)).problems).toEqual([]);

          for (const [n, { id, snapshot }] of history.entries()) {
            if (dropped.has(id)) continue;
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
