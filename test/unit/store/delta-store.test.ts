import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodePatch } from '../../../src/protocol/chunk-encoding.js';
import { BLOB_DELTA, BLOB_LEAVES } from '../../../src/store/blob-codec.js';
import { LEAF_SIZE, blobName } from '../../../src/store/chunks.js';
import { MAX_DELTA_DEPTH, deltaHead } from '../../../src/store/delta-frame.js';
import { collectGarbage } from '../../../src/store/gc.js';
import { repairStore } from '../../../src/store/repair.js';
import type { PointManifest } from '../../../src/store/manifest.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { verifyStore } from '../../../src/store/verify.js';
import { commitDisk, expectSameBytes, flipByte, framedLeafBytes, openTempStore, packOf, type TempStore } from './fixtures.js';

const K = 1024;
const CHUNK = 256 * K;
const REP = 'rep_test';
const name = (b: Uint8Array) => blobName(b, 'leaf16');

/** A disk of four chunks: random and text-like leaves. */
function disk(): Buffer {
  const d = Buffer.alloc(4 * CHUNK);
  for (let i = 0; i < d.length / LEAF_SIZE; i++) {
    if (i % 3 === 0) randomBytes(LEAF_SIZE).copy(d, i * LEAF_SIZE);
    else d.fill(`leaf ${i}; `, i * LEAF_SIZE, (i + 1) * LEAF_SIZE);
  }
  return d;
}

/**
 * One cdp-like point: `writes` 8 KiB writes into chunk 0 of `image` (changed in place), shipped as a patch on the
 * chunk's previous version, committed on `parent`.
 */
async function patchPoint(store: ReplicaStore, image: Buffer, parent: PointManifest, writes: number[]): Promise<PointManifest> {
  const before = Buffer.from(image.subarray(0, CHUNK));
  for (const at of writes) randomBytes(8 * K).copy(image, at);
  const chunk = image.subarray(0, CHUNK);
  const patch = encodePatch(chunk, writes.map((at) => [at, 8 * K] as [number, number]).sort((a, b) => a[0] - b[0]));
  expect(await store.putPatchedChunk(name(chunk), name(before), patch, CHUNK)).toBe(CHUNK);
  return store.commitPoint({ replicationId: REP, parentId: parent.id, capturedAt: new Date(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: image.length, changes: [[0, name(chunk)]] }] });
}

/** A first point, then a second whose chunk 0 is a delta (leaf 3 written) on the first's chunk 0, `base`. */
async function deltaOnBase(store: ReplicaStore): Promise<{ image: Buffer; first: PointManifest; base: string; second: PointManifest }> {
  const image = disk();
  const first = (await commitDisk(store, image)).point;
  const base = name(image.subarray(0, CHUNK));
  const second = await patchPoint(store, image, first, [3 * LEAF_SIZE]);
  return { image, first, base, second };
}

/** Flips a byte in leaf `leaf` of the framed blob `hash` where its pack file holds it (the frame says where). */
async function flipInLeaf(t: TempStore, hash: string, leaf: number): Promise<void> {
  const { stored } = await t.store.blobs.readStored(hash);
  const at = framedLeafBytes(stored, CHUNK, leaf).byteOffset - stored.byteOffset;
  await flipByte(join(t.root, ...packOf(t.store, hash).split('/')), (t.store.blobs.location(hash)?.offset ?? 0) + at + 5);
}

async function expectRestores(t: TempStore, store: ReplicaStore, point: PointManifest, image: Buffer, file: string): Promise<void> {
  await store.materialize(point, 'disk0', t.imagePath(file));
  expectSameBytes(await readFile(t.imagePath(file)), image, file);
}

describe('a store of format 4 (delta blobs)', () => {
  let t: TempStore;
  afterEach(async () => {
    await t.store.close();
    await t.dir.cleanup();
  });

  it('stores patched chunks as deltas up to the depth limit, then whole; every point restores exactly', async () => {
    t = await openTempStore(CHUNK, { format: 4 });
    const store = t.store;
    expect(store.deltas).toBe(true);
    const image = disk();
    let parent = (await commitDisk(store, image)).point;
    expect(store.blobs.location(name(image.subarray(0, CHUNK)))?.flags).toBe(BLOB_LEAVES);
    const history: { point: PointManifest; image: Buffer }[] = [];
    let depth = 0;
    let rebases = 0;
    for (let k = 1; k <= 2 * MAX_DELTA_DEPTH; k++) {
      // One write in the chunk's first half, one in its second: never overlapping.
      parent = await patchPoint(store, image, parent, [((k * 5) % 8) * LEAF_SIZE, (16 + ((k * 7) % 16)) * 8 * K]);
      history.push({ point: parent, image: Buffer.from(image) });
      const hash = name(image.subarray(0, CHUNK));
      const loc = store.blobs.location(hash);
      expectSameBytes(await store.getChunk(hash), image.subarray(0, CHUNK));
      if (loc?.flags === BLOB_LEAVES) {
        // A chain is cut short at a depth drawn between MAX_DELTA_DEPTH - 3 and MAX_DELTA_DEPTH: written whole.
        expect(depth + 1).toBeGreaterThan(MAX_DELTA_DEPTH - 3);
        depth = 0;
        rebases++;
        continue;
      }
      expect(loc?.flags).toBe(BLOB_DELTA);
      const { stored } = await store.blobs.readStored(hash);
      expect(deltaHead(stored)).toMatchObject({ depth: ++depth });
      expect(depth).toBeLessThanOrEqual(MAX_DELTA_DEPTH);
      expect(stored.length).toBeLessThan(3 * LEAF_SIZE); // two leaves written (or one), not the chunk
    }
    expect(rebases).toBeGreaterThanOrEqual(1);
    for (const [i, h] of history.entries()) await expectRestores(t, store, h.point, h.image, `p${i}.img`);
    const reopened = await ReplicaStore.open(t.backend);
    expect((await verifyStore(reopened)).problems).toEqual([]);
    await expectRestores(t, reopened, (history.at(-1) as { point: PointManifest }).point, image, 'reopened.img');
    await reopened.close();
  });

  it('garbage collection keeps the chain of every kept delta, though only older points referenced its bases', async () => {
    t = await openTempStore(CHUNK, { format: 4 });
    const store = t.store;
    const image = disk();
    const first = (await commitDisk(store, image)).point;
    let parent = first;
    const points = [first];
    for (let k = 1; k <= 4; k++) points.push((parent = await patchPoint(store, image, parent, [k * 2 * LEAF_SIZE + 4 * K])));
    // Every point but the last goes: the last one's chunk 0 is a delta 4 deep on blobs no point references now.
    for (const p of points.slice(0, -1)) await store.deletePoint(REP, p.id);
    const result = await collectGarbage(store, { graceMs: 0 });
    expect(result.points).toBe(1);
    await expectRestores(t, store, parent, image, 'last.img');
    const reopened = await ReplicaStore.open(t.backend);
    expect((await verifyStore(reopened)).problems).toEqual([]);
    await expectRestores(t, reopened, parent, image, 'last-reopened.img');
    await reopened.close();
  });

  it('a flipped byte in a base is found by verify and by every read through it; the delta itself checks clean', async () => {
    t = await openTempStore(CHUNK, { format: 4 });
    const { image, base, second: point } = await deltaOnBase(t.store);
    await flipInLeaf(t, base, 9); // not written by the patch: the delta reads it from the base
    const reopened = await ReplicaStore.open(t.backend);
    const found = (await verifyStore(reopened)).problems;
    const problems = found.map((p) => p.problem).join('\n');
    expect(problems).toContain(`blob ${base}`);
    // Both points lose data through the damaged base: the first holds it, the second reads through it.
    expect(found.find((p) => p.problem.includes(`blob ${base}`))?.points?.length).toBe(2);
    expect(problems).not.toContain(`blob ${name(image.subarray(0, CHUNK))} in`);
    await expect(reopened.getChunk(name(image.subarray(0, CHUNK)))).rejects.toThrow(/leaf 9/);
    await expect(reopened.materialize(point, 'disk0', t.imagePath('bad.img'))).rejects.toThrow(/corrupt/);
    await reopened.close();
  });

  it('repair drops a damaged base; its deltas are then missing, sent again whole, and every point restores', async () => {
    t = await openTempStore(CHUNK, { format: 4 });
    const store = t.store;
    const { image, first, base, second } = await deltaOnBase(store);
    const delta = name(image.subarray(0, CHUNK));
    await flipInLeaf(t, base, 1);
    await store.close();

    const reopened = await ReplicaStore.open(t.backend);
    const repaired = await repairStore(reopened);
    expect(repaired.lost.map((b) => b.hash)).toContain(base);
    expect(repaired.resyncRequested).toEqual([REP]);
    // The delta is indexed still, but cannot be read: it is reported missing, so the agent sends it again (whole, as
    // a resync sends what the store lacks). The base was an older version of the chunk: that point keeps its loss.
    expect(await reopened.missingChunks([base, delta])).toEqual([base, delta]);
    await expect(reopened.materialize(second, 'disk0', t.imagePath('broken.img'))).rejects.toThrow(`blob ${base} of a delta's chain is missing from the store`);
    await reopened.putChunk(delta, image.subarray(0, CHUNK));
    const third = await reopened.commitPoint({ replicationId: REP, parentId: second.id, capturedAt: new Date(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: image.length, changes: [[0, delta]] }] });
    expect(reopened.blobs.location(delta)?.flags).toBe(BLOB_LEAVES); // the whole copy took the delta's place
    await expectRestores(t, reopened, second, image, 'second.img');
    await expectRestores(t, reopened, third, image, 'third.img');
    await expect(reopened.materialize(first, 'disk0', t.imagePath('first.img'))).rejects.toThrow(base);
    await collectGarbage(reopened, { graceMs: 0 });
    const again = await ReplicaStore.open(t.backend);
    expect((await verifyStore(again)).problems.map((p) => p.object)).toEqual([`blob ${base}`]);
    expect(again.blobs.location(delta)?.flags).toBe(BLOB_LEAVES);
    await expectRestores(t, again, third, image, 'after-gc.img');
    await again.close();
    t.store = reopened;
  });
});
