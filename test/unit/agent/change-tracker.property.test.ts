import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { ChangeTracker, type FrozenCut } from '../../../src/agent/cdp/change-tracker.js';
import { CowStore } from '../../../src/agent/cdp/cow-store.js';

const SIZE = 2 * 1024 * 1024 + 5000; // two tracking regions and a ragged end
const CHUNK = 64 * 1024;
const CHUNKS = Math.ceil(SIZE / CHUNK);

type Op =
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'cut' }
  | { kind: 'read'; pick: number }
  | { kind: 'finish'; complete: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('write' as const), offset: fc.integer({ min: 0, max: SIZE - 1 }), length: fc.integer({ min: 1, max: 200_000 }), seed: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'cut' as const }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('read' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('finish' as const), complete: fc.boolean() }) },
);

/**
 * The change tracker against a model, over random interleavings of writes, cuts, chunk reads, completes and
 * abandons: every chunk read through a cut equals the disk's bytes at the cut (copy-on-write), every cut lists every
 * chunk that differs from the last completed cut, and changed runs cover every differing byte.
 */
describe('change tracker (model-based)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rtrack-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('cuts are instants, listings complete and runs exact, whatever the interleaving', () => {
    let run = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        const cow = new CowStore(join(dir, `cow-${run++}.bin`));
        try {
          const live = Buffer.alloc(SIZE);
          const readLive = (t: Buffer, at: number) => live.copy(t, 0, at, at + t.length);
          const tracker = new ChangeTracker(SIZE, cow, undefined);
          tracker.markAll(); // a fresh tracker knows nothing: the first cut lists everything
          let completed: Buffer = Buffer.alloc(SIZE); // the disk at the last completed cut (a first cut compares with zeros)
          let open: { cut: FrozenCut; atCut: Buffer; unread: number[] } | undefined;
          for (const o of ops) {
            if (o.kind === 'write') {
              const length = Math.min(o.length, SIZE - o.offset);
              tracker.beforeWrite(o.offset, length, readLive);
              live.fill(o.seed, o.offset, o.offset + length);
            } else if (o.kind === 'cut' && !open) {
              const cut = tracker.cut(CHUNK);
              const listed = new Set(cut.chunkIndexes);
              for (let i = 0; i < CHUNKS; i++) {
                const a = live.subarray(i * CHUNK, (i + 1) * CHUNK);
                const b = completed.subarray(i * CHUNK, (i + 1) * CHUNK);
                if (a.equals(b)) continue;
                if (!listed.has(i)) throw new Error(`chunk ${i} changed but is not listed`);
                const runs = cut.changedRuns(i);
                for (let x = 0; x < a.length; x += 4096) {
                  if (a.subarray(x, x + 4096).equals(b.subarray(x, x + 4096))) continue;
                  if (!runs.some(([s, l]) => x >= s && x < s + l)) throw new Error(`chunk ${i} block at ${x} changed outside its runs`);
                }
              }
              open = { cut, atCut: Buffer.from(live), unread: [...cut.chunkIndexes] };
            } else if (o.kind === 'read' && open && open.unread.length > 0) {
              const [i] = open.unread.splice(o.pick % open.unread.length, 1) as [number];
              const got = open.cut.readChunk(i, readLive);
              if (!got.equals(open.atCut.subarray(i * CHUNK, (i + 1) * CHUNK))) throw new Error(`chunk ${i} read is not the chunk at the cut`);
            } else if (o.kind === 'finish' && open) {
              if (o.complete) {
                for (const i of open.unread) open.cut.readChunk(i, readLive); // a point is committed only once all is read
                tracker.complete(open.cut);
                completed = open.atCut;
              } else {
                tracker.abandon(open.cut);
              }
              open = undefined;
            }
          }
        } finally {
          cow.close();
        }
      }),
      { numRuns: 150 },
    );
  });
});
