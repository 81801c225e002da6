import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newId } from '../../../src/core/ids.js';
import { chunkLength } from '../../../src/store/chunks.js';
import { collectGarbage } from '../../../src/store/gc.js';
import { encodeSummedJson, type PointManifest } from '../../../src/store/manifest.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { STAGE_MAX_AGE_MS, stagePrefix } from '../../../src/store/staging.js';
import { verifyStore } from '../../../src/store/verify.js';
import { expectRefugeError } from './expect-error.js';
import { CHUNK, diffHashes, expectSameBytes, hashChunks, openTempStore, type TempStore } from './fixtures.js';

const REP = 'rep_staged';
const ONE_SHOT = 'rep_oneshot';

/** Uploads the chunks `changes` name from `disk`. */
async function upload(store: ReplicaStore, disk: Buffer, changes: [number, string | null][]): Promise<void> {
  for (const [i, h] of changes) if (h !== null && !store.blobs.has(h)) await store.putChunk(h, disk.subarray(i * CHUNK, i * CHUNK + chunkLength(disk.length, CHUNK, i)));
}

/** Commits `changes` of `disk` in parts of `partSize` entries (the last part going with the commit) under REP. */
async function commitStaged(store: ReplicaStore, disk: Buffer, changes: [number, string | null][], parent: PointManifest | null, partSize: number): Promise<PointManifest> {
  await upload(store, disk, changes);
  const stageId = newId('stg');
  const tail = changes.slice(Math.floor((changes.length - 1) / partSize) * partSize);
  for (let n = 0, at = 0; at + tail.length < changes.length; n++, at += partSize) {
    await store.stageChanges(REP, stageId, n, [{ name: 'disk0', changes: changes.slice(at, Math.min(at + partSize, changes.length - tail.length)) }]);
  }
  return store.commitPoint({ replicationId: REP, parentId: parent?.id ?? null, capturedAt: new Date(), consistency: 'crash', stageId, disks: [{ name: 'disk0', sizeBytes: disk.length, changes: tail }] });
}

/** The same changes committed in one request under ONE_SHOT: what a staged commit must equal. */
async function commitWhole(store: ReplicaStore, disk: Buffer, changes: [number, string | null][], parent: PointManifest | null): Promise<PointManifest> {
  await upload(store, disk, changes);
  return store.commitPoint({ replicationId: ONE_SHOT, parentId: parent?.id ?? null, capturedAt: new Date(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: disk.length, changes }] });
}

const withoutIds = (m: PointManifest) => m.disks.map((d) => ({ ...d }));

/**
 * A change list too long for one commit request (a large disk's first point) arrives in parts before its commit
 * (staging.ts): the point committed from the parts is the point one request would have made, tree root and counts
 * alike, whether it is a first point, a later one, or one of a resized disk; a stage is deleted by its commit, keeps
 * its chunks through garbage collection while it waits, and is dropped once abandoned.
 */
describe('staged commits', () => {
  let t: TempStore;
  afterEach(async () => {
    await t.store.close();
    await t.dir.cleanup();
  });

  it('commits a first point, a later one and a resized disk from parts exactly as from one list', async () => {
    t = await openTempStore(CHUNK);
    const disk = randomBytes(50 * CHUNK);
    disk.fill(0, 10 * CHUNK, 14 * CHUNK); // zero chunks are not listed in a first point
    const first = diffHashes(hashChunks(disk, CHUNK), null);
    const staged1 = await commitStaged(t.store, disk, first, null, 7);
    const whole1 = await commitWhole(t.store, disk, first, null);
    expect(withoutIds(staged1)).toEqual(withoutIds(whole1));
    expect(staged1.stats).toEqual(whole1.stats);
    expect(staged1.stats.changedChunks).toBe(46);

    const next = Buffer.from(disk);
    for (const i of [0, 3, 11, 30, 49]) randomBytes(CHUNK).copy(next, i * CHUNK);
    next.fill(0, 20 * CHUNK, 22 * CHUNK);
    const second = diffHashes(hashChunks(next, CHUNK), hashChunks(disk, CHUNK));
    const staged2 = await commitStaged(t.store, next, second, staged1, 2);
    const whole2 = await commitWhole(t.store, next, second, whole1);
    expect(withoutIds(staged2)).toEqual(withoutIds(whole2));
    expect(staged2.stats).toEqual(whole2.stats);

    const grown = Buffer.concat([next, randomBytes(3 * CHUNK + 100)]); // its old last chunk keeps its length
    const third = diffHashes(hashChunks(grown, CHUNK), hashChunks(next, CHUNK));
    const staged3 = await commitStaged(t.store, grown, third, staged2, 1);
    const whole3 = await commitWhole(t.store, grown, third, whole2);
    expect(withoutIds(staged3)).toEqual(withoutIds(whole3));

    for (const [m, bytes] of [[staged1, disk], [staged2, next], [staged3, grown]] as const) {
      const path = t.imagePath(m.id);
      await t.store.materialize(m, 'disk0', path);
      expectSameBytes(await readFile(path), bytes, m.id);
    }
    expect(await t.store.backend.list('staging/')).toEqual([]); // each commit deleted its stage
    expect((await verifyStore(t.store)).problems).toEqual([]);
  });

  it('refuses an unknown stage, a part naming another disk and chunks not stored, committing nothing; the stage stays for a retry', async () => {
    t = await openTempStore(CHUNK);
    const disk = randomBytes(8 * CHUNK);
    const changes = diffHashes(hashChunks(disk, CHUNK), null);
    const commit = (stageId: string, tail: [number, string | null][] = []) =>
      t.store.commitPoint({ replicationId: REP, parentId: null, capturedAt: new Date(), consistency: 'crash', stageId, disks: [{ name: 'disk0', sizeBytes: disk.length, changes: tail }] });
    await expectRefugeError(commit(newId('stg')), 'failed_precondition', 'holds no staged changes');
    await expectRefugeError(t.store.stageChanges(REP, 'not a stage', 0, []), 'invalid_argument', 'is not a stage id');
    await expectRefugeError(t.store.stageChanges(REP, newId('stg'), 0, [{ name: 'disk0', changes: [[0, 'zz']] }]), 'invalid_argument', 'is not a chunk hash');

    const other = newId('stg');
    await t.store.stageChanges(REP, other, 0, [{ name: 'disk9', changes: [] }]);
    await expectRefugeError(commit(other), 'invalid_argument', "disk 'disk9'");

    const stageId = newId('stg');
    await t.store.stageChanges(REP, stageId, 0, [{ name: 'disk0', changes: changes.slice(0, 5) }]);
    await expectRefugeError(commit(stageId, changes.slice(5)), 'failed_precondition', 'not stored');
    expect(await t.store.listPointIds(REP)).toEqual([]);
    await upload(t.store, disk, changes);
    const point = await commit(stageId, changes.slice(5)); // the same stage, once the chunks are there
    await t.store.materialize(point, 'disk0', t.imagePath('retried'));
    expectSameBytes(await readFile(t.imagePath('retried')), disk, 'retried');
  });

  it('keeps the chunks a waiting stage lists through garbage collection, seals stages in an encrypted store, and drops abandoned stages', async () => {
    const vaultKey = randomBytes(32);
    t = await openTempStore(CHUNK, { encrypt: true, vaultKey });
    const disk = randomBytes(6 * CHUNK);
    const changes = diffHashes(hashChunks(disk, CHUNK), null);
    await upload(t.store, disk, changes);
    const stageId = newId('stg');
    await t.store.stageChanges(REP, stageId, 0, [{ name: 'disk0', changes: changes.slice(0, 4) }]);
    const hash = changes[0]?.[1] as string;
    for (const f of await readdir(join(t.root, stagePrefix(REP, stageId)))) {
      expect((await readFile(join(t.root, stagePrefix(REP, stageId), f))).includes(Buffer.from(hash)), f).toBe(false);
    }

    // No point references the chunks yet, the grace period is over and no writer holds them (the uploading
    // store is closed, as a replicator restarted mid-seed): the stage alone keeps its four.
    await t.store.blobs.flush({ index: true });
    await t.store.close();
    t.store = await ReplicaStore.open(t.backend, { vaultKey });
    const gc = await collectGarbage(t.store, { graceMs: 0, repackBelow: 1 }); // every pack holding garbage is rewritten
    expect(gc.abandonedStages).toBe(0);
    for (const [, h] of changes.slice(0, 4)) expect(t.store.blobs.has(h as string)).toBe(true);
    for (const [, h] of changes.slice(4)) expect(t.store.blobs.has(h as string)).toBe(false);
    await upload(t.store, disk, changes.slice(4));
    const point = await t.store.commitPoint({ replicationId: REP, parentId: null, capturedAt: new Date(), consistency: 'crash', stageId, disks: [{ name: 'disk0', sizeBytes: disk.length, changes: changes.slice(4) }] });
    await t.store.materialize(point, 'disk0', t.imagePath('kept'));
    expectSameBytes(await readFile(t.imagePath('kept')), disk, 'kept');

    // A stage untouched for longer than STAGE_MAX_AGE_MS was given up by its agent: collected, and its chunks with it later.
    const old = newId('stg');
    const doc = { format: 1, createdAt: new Date(Date.now() - STAGE_MAX_AGE_MS - 60_000).toISOString(), disks: [{ name: 'disk0', changes: changes.slice(0, 1) }] };
    await t.store.backend.put(`${stagePrefix(REP, old)}000000.json`, encodeSummedJson(doc, t.store.key));
    expect((await collectGarbage(t.store, { graceMs: 0, dryRun: true })).abandonedStages).toBe(1);
    expect(await t.store.backend.list(stagePrefix(REP, old))).toHaveLength(1); // a dry run deletes nothing
    expect((await collectGarbage(t.store, { graceMs: 0 })).abandonedStages).toBe(1);
    expect(await t.store.backend.list('staging/')).toEqual([]);
    expect((await verifyStore(t.store)).problems).toEqual([]);
  });
});
