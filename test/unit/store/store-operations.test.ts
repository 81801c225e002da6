import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chunkCount } from '../../../src/store/chunks.js';
import { collectGarbage } from '../../../src/store/gc.js';
import { listIndexedBlobs } from '../../../src/store/inspect.js';
import type { PointManifest } from '../../../src/store/manifest.js';
import { prunePoints } from '../../../src/store/prune.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { ASR_RETENTION } from '../../../src/store/retention.js';
import { treeRoot } from '../../../src/store/tree.js';
import { verifyStore } from '../../../src/store/verify.js';
import { expectRefugeError } from './expect-error.js';
import { CHUNK, commitDisk, expectSameBytes, flipByte, hashChunks, openTempStore, packOf, type TempStore } from './fixtures.js';

const REP = 'rep_test';

/** Every file under a folder, recursively. */
async function files(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

async function expectRestores(t: TempStore, store: ReplicaStore, id: string, disk: Buffer, name: string): Promise<void> {
  const point = await store.getPoint(REP, id);
  await store.materialize(point, 'disk0', t.imagePath(name));
  expectSameBytes(await readFile(t.imagePath(name)), disk, name);
}

describe('ReplicaStore operations (the default format)', () => {
  let t: TempStore;
  afterEach(async () => {
    await t.store.close();
    await t.dir.cleanup();
  });

  describe('encryption', () => {
    const vaultKey = randomBytes(32);
    beforeEach(async () => {
      t = await openTempStore(CHUNK, { encrypt: true, vaultKey, packSize: 32 * 1024 });
    });

    it('keeps no plaintext at rest and restores with the vault key', async () => {
      const marker = Buffer.from('REFUGE-PLAINTEXT-MARKER-0123456789');
      const disk = Buffer.alloc(20 * CHUNK);
      for (let at = 0; at < disk.length; at += 64) marker.copy(disk, at); // compressible text everywhere
      const { point } = await commitDisk(t.store, disk);
      for (const f of await files(t.root)) {
        const bytes = await readFile(f);
        expect(bytes.includes(marker), f).toBe(false);
        expect(bytes.includes(Buffer.from(REP)) && !f.includes(REP), `${f} names the replication inside`).toBe(false);
      }
      const again = await ReplicaStore.open(t.backend, { vaultKey });
      await expectRestores(t, again, point.id, disk, 'enc.img');
    });

    it('refuses a missing or wrong vault key with a clear error', async () => {
      await expectRefugeError(ReplicaStore.open(t.backend), 'failed_precondition', 'encrypted', 'no vault key');
      await expectRefugeError(ReplicaStore.open(t.backend, { vaultKey: randomBytes(32) }), 'permission_denied', 'not the key');
      await expectRefugeError(ReplicaStore.open(t.backend, { vaultKey: randomBytes(31) }), 'invalid_argument', '32 bytes');
    });
  });

  describe('plain', () => {
    beforeEach(async () => {
      t = await openTempStore(CHUNK, { packSize: 32 * 1024 });
    });

    it('compresses compressible chunks and stores random ones as they are', async () => {
      const disk = Buffer.concat([Buffer.from('refuge '.repeat(Math.ceil((10 * CHUNK) / 7))).subarray(0, 10 * CHUNK), randomBytes(10 * CHUNK)]);
      await commitDisk(t.store, disk);
      const blobs = (await listIndexedBlobs(t.store)).filter((b) => b.type === 'data');
      const text = blobs.filter((b) => b.length < b.rawLength / 4);
      // Stored as they are: in a plain format-3 store behind a leaf frame's 40 bytes (one leaf of a 4 KiB chunk).
      const random = blobs.filter((b) => b.length === b.rawLength + (t.store.naming === 'leaf16' ? 40 : 0));
      expect(text.length).toBeGreaterThan(0);
      expect(random).toHaveLength(10);
    });

    it('groups chunks into packs: far fewer objects than chunks', async () => {
      await commitDisk(t.store, randomBytes(64 * CHUNK));
      const packs = (await t.backend.list('packs/')).length;
      expect(packs).toBeGreaterThan(1);
      expect(packs).toBeLessThanOrEqual(64 * CHUNK / (32 * 1024) + 2);
    });

    it('diffs two points into the changed byte ranges, and a source tree compares with its replica by root hash', async () => {
      const disk = randomBytes(600 * CHUNK); // more than one leaf of the tree
      const { point: p1 } = await commitDisk(t.store, disk);
      expect(p1.disks[0]?.root).toBe(await treeRoot(hashChunks(disk, CHUNK), t.store.naming));
      const changed = [3, 4, 5, 300, 599];
      for (const i of changed) disk.writeUInt8(disk.readUInt8(i * CHUNK + 17) ^ 0xff, i * CHUNK + 17);
      const { point: p2 } = await commitDisk(t.store, disk, { parent: p1 });
      expect(await t.store.diffPoints(p1, p2)).toEqual([
        { disk: 'disk0', ranges: [{ offset: 3 * CHUNK, length: 3 * CHUNK }, { offset: 300 * CHUNK, length: CHUNK }, { offset: 599 * CHUNK, length: CHUNK }] },
      ]);
      expect(await t.store.diffPoints(p2, p2)).toEqual([{ disk: 'disk0', ranges: [] }]);
      expect(p2.disks[0]?.root).toBe(await treeRoot(hashChunks(disk, CHUNK), t.store.naming));
      expect(p2.stats).toMatchObject({ changedChunks: 5, changedBytes: 5 * CHUNK });
    });

    it('follows a disk that grows and shrinks', async () => {
      const disk = randomBytes(10 * CHUNK + 100);
      const { point: p1 } = await commitDisk(t.store, disk);
      const bigger = Buffer.concat([disk, randomBytes(3 * CHUNK)]);
      const { point: p2 } = await commitDisk(t.store, bigger, { parent: p1 });
      const smaller = bigger.subarray(0, 4 * CHUNK + 5);
      const { point: p3 } = await commitDisk(t.store, smaller, { parent: p2 });
      await expectRestores(t, t.store, p1.id, disk, 'g1.img');
      await expectRestores(t, t.store, p2.id, bigger, 'g2.img');
      await expectRestores(t, t.store, p3.id, smaller, 'g3.img');
      expect(p3.disks[0]?.storedChunks).toBe(chunkCount(smaller.length, CHUNK));
    });

    it('prunes on the retention schedule and garbage collection frees what only pruned points used, repacking', async () => {
      const t0 = Date.UTC(2026, 0, 1);
      const disk = randomBytes(40 * CHUNK);
      const history: { point: PointManifest; disk: Buffer }[] = [];
      let parent: PointManifest | null = null;
      for (let k = 0; k < 12; k++) {
        randomBytes(32 * CHUNK).copy(disk, (k % 2) * 8 * CHUNK); // most of the disk rewritten per point
        const { point } = await commitDisk(t.store, disk, { parent, capturedAt: new Date(t0 + k * 30 * 60_000) });
        history.push({ point, disk: Buffer.from(disk) });
        parent = point;
      }
      const now = t0 + 11 * 30 * 60_000 + 3 * 3600_000; // points are 3 to 8.5 hours old
      const { kept, pruned } = await prunePoints(t.store, REP, ASR_RETENTION, { now });
      expect(kept.length + pruned.length).toBe(12);
      expect(pruned.length).toBeGreaterThan(4);
      expect(kept).toContain(history.at(-1)?.point.id);
      const bytesBefore = (await listIndexedBlobs(t.store)).reduce((n, b) => n + b.length, 0);
      const result = await collectGarbage(t.store, { graceMs: 0 });
      expect(result.packsDeleted + result.packsWritten).toBeGreaterThan(0);
      const bytesAfter = (await listIndexedBlobs(t.store)).reduce((n, b) => n + b.length, 0);
      expect(bytesAfter).toBeLessThan(bytesBefore * 0.8);
      for (const h of history) if (kept.includes(h.point.id)) await expectRestores(t, t.store, h.point.id, h.disk, `${h.point.id}.img`);
      const reopened = await ReplicaStore.open(t.backend);
      expect((await verifyStore(reopened)).problems).toEqual([]);
      for (const h of history.slice(-1)) await expectRestores(t, reopened, h.point.id, h.disk, 'last.img');
    });

    it('garbage collection keeps unreferenced uploads younger than the grace period and those a writer holds', async () => {
      const [a, c] = [randomBytes(CHUNK), randomBytes(CHUNK)];
      const [ha, hc] = [hashChunks(a, CHUNK)[0] as string, hashChunks(c, CHUNK)[0] as string];
      const gone = await ReplicaStore.open(t.backend); // an uploader that stopped without committing
      await gone.putChunk(ha, a);
      await gone.blobs.flush({ index: true });
      await gone.close();
      const writer = await ReplicaStore.open(t.backend); // another process, in the middle of an upload
      await writer.putChunk(hc, c);
      await writer.blobs.flush({ index: true }); // written and indexed, but no point references it yet
      await commitDisk(t.store, randomBytes(2 * CHUNK));
      await collectGarbage(t.store, { graceMs: 3600_000 });
      expect(await t.store.missingChunks([ha, hc])).toEqual([]); // both younger than the grace period
      await collectGarbage(t.store, { graceMs: 0 });
      expect(await t.store.missingChunks([ha, hc])).toEqual([ha]); // the writer's notice protects c
      await writer.close();
      await collectGarbage(t.store, { graceMs: 0 });
      expect(await t.store.missingChunks([ha, hc])).toEqual([ha, hc]);
      expect((await verifyStore(t.store)).problems).toEqual([]);
    });

    it('a damaged index file costs nothing: packs are found by their headers, verify names it, gc replaces it', async () => {
      const disk = randomBytes(30 * CHUNK);
      const { point } = await commitDisk(t.store, disk);
      const indexFiles = await t.backend.list('index/');
      expect(indexFiles.length).toBeGreaterThan(0);
      for (const name of indexFiles) await flipByte(join(t.root, ...name.split('/')), 40);
      const reopened = await ReplicaStore.open(t.backend);
      expect([...reopened.blobs.damagedIndexFiles].sort()).toEqual([...indexFiles].sort());
      await expectRestores(t, reopened, point.id, disk, 'after-index-damage.img');
      const problems = (await verifyStore(reopened)).problems;
      expect(problems.map((p) => p.object).sort()).toEqual([...indexFiles].sort());
      const gc = await collectGarbage(reopened, { graceMs: 0 });
      expect(gc.adoptedPacks).toBeGreaterThan(0);
      expect(gc.packsDeleted).toBe(0);
      const repaired = await ReplicaStore.open(t.backend);
      expect(repaired.blobs.damagedIndexFiles.size).toBe(0);
      expect((await verifyStore(repaired)).problems).toEqual([]);
      await expectRestores(t, repaired, point.id, disk, 'after-repair.img');
    });

    it('verify finds a flipped byte, naming the pack and the points that lose data', async () => {
      const disk = randomBytes(16 * CHUNK);
      const { point: p1 } = await commitDisk(t.store, disk);
      const { point: p2 } = await commitDisk(t.store, disk, { parent: p1 });
      expect((await verifyStore(t.store)).problems).toEqual([]);
      const victim = hashChunks(disk, CHUNK)[5] as string;
      const key = packOf(t.store, victim);
      const loc = t.store.blobs.location(victim);
      await flipByte(join(t.root, ...key.split('/')), (loc?.offset ?? 0) + 100);
      const result = await verifyStore(t.store);
      expect(result.problems).toHaveLength(1);
      expect(result.problems[0]?.object).toBe(key);
      expect(result.problems[0]?.problem).toContain(victim);
      expect(result.problems[0]?.points?.sort()).toEqual([`points/${REP}/${p1.id}.json`, `points/${REP}/${p2.id}.json`].sort());
      const sampled = await verifyStore(t.store, { sample: 0.0001 });
      expect(sampled.packsChecked).toBeLessThan(sampled.packs);
    });
  });
});

describe('concurrent garbage collection and commits', () => {
  it('lose nothing: every point whose commit succeeded restores, whatever the interleaving', async () => {
    const t = await openTempStore(CHUNK, { packSize: 16 * 1024 });
    try {
      const collector = await ReplicaStore.open(t.backend, { locks: { timeoutMs: 60_000 } });
      const disk = randomBytes(24 * CHUNK);
      const committed: { id: string; disk: Buffer }[] = [];
      let parent: PointManifest | null = null;
      let stop = false;
      // The collector prunes all but the newest point and collects with no grace, as hard as it can.
      const gcLoop = (async () => {
        let runs = 0;
        while (!stop || runs < 3) {
          const ids = await collector.listPointIds(REP);
          for (const id of ids.slice(0, -1)) await collector.deletePoint(REP, id);
          await collectGarbage(collector, { graceMs: 0, repackBelow: 0.9 });
          runs++;
        }
        return runs;
      })();
      for (let k = 0; k < 25; k++) {
        // Rewrite a few chunks, sometimes back to contents of pruned points (dedup against garbage).
        const i = k % 24;
        if (k % 3 === 0 && committed.length > 2) committed[0]?.disk.copy(disk, i * CHUNK, i * CHUNK, (i + 1) * CHUNK);
        else randomBytes(CHUNK).copy(disk, i * CHUNK);
        try {
          const { point } = await commitDisk(t.store, disk, { parent });
          committed.push({ id: point.id, disk: Buffer.from(disk) });
          parent = point;
        } catch (err) {
          // A commit may fail cleanly when gc removed a chunk it deduplicated against; then nothing is committed.
          expect((err as { code?: string }).code).toBe('failed_precondition');
          expect(await t.store.listPointIds(REP)).not.toContain(undefined);
        }
      }
      stop = true;
      expect(await gcLoop).toBeGreaterThanOrEqual(3);
      expect(committed.length).toBeGreaterThan(15);
      const latest = committed.at(-1) as { id: string; disk: Buffer };
      const fresh = await ReplicaStore.open(t.backend);
      expect((await verifyStore(fresh)).problems).toEqual([]);
      const point = await fresh.getPoint(REP, latest.id);
      await fresh.materialize(point, 'disk0', t.imagePath('latest.img'));
      expectSameBytes(await readFile(t.imagePath('latest.img')), latest.disk, 'latest point');
      await collector.close();
    } finally {
      await t.store.close();
      await t.dir.cleanup();
    }
  });
});
