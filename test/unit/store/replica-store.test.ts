import { randomBytes } from 'node:crypto';
import { readFile, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { blobName, type BlobNaming } from '../../../src/store/chunks.js';
import { encodePatch } from '../../../src/protocol/chunk-encoding.js';
import { pointRecord } from '../../../src/protocol/replicator-vault.js';
import type { DiskManifest, PointManifest } from '../../../src/store/manifest.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import type { PatchUpload } from '../../../src/store/patched-chunks.js';
import { MAX_CHUNK_SIZE } from '../../../src/store/store-config.js';
import { expectRefugeError } from './expect-error.js';
import { CHUNK, commitDisk, expectSameBytes, flipByte, hashChunks, openTempStore, packOf, storedChunkHashes, type TempStore } from './fixtures.js';

// 11 chunks, the last one short (1000 bytes), so every test also covers a disk that is not chunk-aligned.
const SIZE = 10 * CHUNK + 1000;
const REP = 'rep_test';

const chunkOf = (disk: Buffer, i: number): Buffer => disk.subarray(i * CHUNK, Math.min((i + 1) * CHUNK, disk.length));

/** A disk mixing random chunks, zero chunks, a duplicated chunk and a chunk that is zero but for one byte. */
function sampleDisk(): Buffer {
  const disk = Buffer.alloc(SIZE);
  for (const i of [0, 2, 5, 10]) randomBytes(chunkOf(disk, i).length).copy(disk, i * CHUNK);
  chunkOf(disk, 0).copy(disk, 3 * CHUNK); // chunk 3 = chunk 0: stored once
  disk[7 * CHUNK - 1] = 0x5a; // chunk 6 holds one non-zero byte, at its very end
  return disk;
}

// The whole suite runs on each store format: 2 names blobs by SHA-256, 3 by leaf digests, 4 as 3 with patched chunks
// stored as deltas (store-config.ts).
describe.each([2, 3, 4] as const)('ReplicaStore, format %i', (format) => {
  let t: TempStore;
  let store: ReplicaStore;
  const naming: BlobNaming = format >= 3 ? 'leaf16' : 'sha256';
  const chunkHash = (data: Uint8Array): string => blobName(data, naming);
  const uniqueChunks = (...disks: Buffer[]): string[] =>
    [...new Set(disks.flatMap((d) => hashChunks(d, CHUNK, naming)).filter((h): h is string => h !== null))].sort();

  beforeEach(async () => {
    t = await openTempStore(CHUNK, { format });
    expect(t.store.naming).toBe(naming);
    store = t.store;
  });
  afterEach(async () => {
    await t.dir.cleanup();
  });

  async function expectRestores(point: PointManifest, disk: Buffer, name: string): Promise<void> {
    // Re-read the manifest from the store: the returned object proves nothing about what was persisted.
    const stored = await store.getPoint(point.replicationId, point.id);
    expect(stored).toEqual(point);
    expectSameBytes(await store.readRange(stored, 'disk0', 0, disk.length), disk, `${name} readRange`);
    await store.materialize(stored, 'disk0', t.imagePath(name));
    expectSameBytes(await readFile(t.imagePath(name)), disk, name);
  }

  describe('first point', () => {
    it('reads back every byte, whatever the range, and restores to an identical image', async () => {
      const disk = sampleDisk();
      const { point, changes } = await commitDisk(store, disk);
      expect(point.parentId).toBeNull();
      expect(point.disks).toMatchObject([{ name: 'disk0', sizeBytes: SIZE, chunkSize: CHUNK, storedChunks: 6, storedBytes: 5 * CHUNK + 1000 }]);
      expect(await store.diskChunks(point, 'disk0')).toEqual(hashChunks(disk, CHUNK, naming));
      expect(changes.map(([i]) => i)).toEqual([0, 2, 3, 5, 6, 10]);
      expect(point.stats.changedChunks).toBe(6);

      const ranges: [number, number][] = [
        [0, SIZE],
        [CHUNK - 96, 200], // across chunks 0|1, data into a zero chunk
        [2 * CHUNK - 1, CHUNK + 2], // touches three chunks
        [7 * CHUNK - 1, 1], // the lone byte of chunk 6
        [10 * CHUNK, 1000], // exactly the short last chunk
        [10 * CHUNK - 10, 1010], // into the short last chunk up to the end of the disk
        [SIZE - 1, 1],
        [5 * CHUNK, 0],
      ];
      // Plus a sweep of odd-sized ranges that covers the whole disk.
      for (let off = 0; off < SIZE; off += 1531) ranges.push([off, Math.min(2999, SIZE - off)]);
      for (const [off, len] of ranges) {
        expectSameBytes(await store.readRange(point, 'disk0', off, len), disk.subarray(off, off + len), `range ${off}+${len}`);
      }

      const result = await store.materialize(point, 'disk0', t.imagePath('restored.img'));
      expect(result).toEqual({ sizeBytes: SIZE, writtenBytes: 5 * CHUNK + 1000 });
      expectSameBytes(await readFile(t.imagePath('restored.img')), disk, 'image');
      expect(await store.verifyPoint(point)).toEqual([]);
    });

    it('rejects ranges outside the disk and unknown disks', async () => {
      const { point } = await commitDisk(store, sampleDisk());
      await expectRefugeError(store.readRange(point, 'disk0', SIZE - 10, 11), 'invalid_argument');
      await expectRefugeError(store.readRange(point, 'disk0', -1, 2), 'invalid_argument');
      await expectRefugeError(store.readRange(point, 'disk1', 0, 1), 'not_found', 'disk1');
    });

    it('stores each distinct non-zero chunk once and no zero chunk', async () => {
      const disk = sampleDisk();
      const { uploaded } = await commitDisk(store, disk);
      // 0, 2, 5, 6, 10; chunk 3 duplicates chunk 0; chunks 1, 4, 7, 8, 9 are zeros.
      expect(uploaded).toBe(5);
      expect(await storedChunkHashes(store)).toEqual(uniqueChunks(disk));
      expect(await storedChunkHashes(store)).toHaveLength(5);
    });

    it('restores zero chunks as holes: the image of a mostly-zero disk is sparse', async () => {
      const disk = Buffer.alloc(256 * CHUNK); // 1 MiB, two chunks of data
      randomBytes(CHUNK).copy(disk, 17 * CHUNK);
      randomBytes(CHUNK).copy(disk, 200 * CHUNK);
      const { point } = await commitDisk(store, disk);
      expect(await storedChunkHashes(store)).toHaveLength(2);
      // An old file at the target must not leak into the holes.
      await writeFile(t.imagePath('sparse.img'), Buffer.alloc(disk.length, 0xff));
      await store.materialize(point, 'disk0', t.imagePath('sparse.img'));
      const st = await stat(t.imagePath('sparse.img'));
      expect(st.size).toBe(disk.length);
      expect(st.blocks * 512).toBeLessThan(disk.length / 8);
      expectSameBytes(await readFile(t.imagePath('sparse.img')), disk, 'image');
    });

    it('counts stats in the bytes the chunks really have (the last chunk is short)', async () => {
      const disk = randomBytes(SIZE); // 11 chunks, all data
      const { point } = await commitDisk(store, disk);
      expect(point.stats.changedChunks).toBe(11);
      // The agent reports the same figure (src/agent/scanner.ts sums chunk lengths); a disk of SIZE bytes cannot
      // have more than SIZE bytes changed or stored.
      expect(point.stats.changedBytes).toBe(SIZE);
      expect(point.stats.storedBytes).toBe(SIZE);
    });
  });

  describe('point from a parent', () => {
    it('is committed from the changed chunks only, shares the rest and both points keep their contents', async () => {
      const disk1 = sampleDisk();
      const { point: p1 } = await commitDisk(store, disk1);
      const disk2 = Buffer.from(disk1);
      chunkOf(disk2, 0).fill(0); // data -> zeros
      randomBytes(CHUNK).copy(disk2, 1 * CHUNK); // zeros -> data
      disk2.writeUInt8(disk2.readUInt8(2 * CHUNK + 7) ^ 0x01, 2 * CHUNK + 7); // one bit of chunk 2
      disk2.writeUInt8(disk2.readUInt8(SIZE - 1) ^ 0x80, SIZE - 1); // one bit of the short last chunk

      const { point: p2, changes, uploaded } = await commitDisk(store, disk2, { parent: p1 });
      expect(changes.map(([i, h]) => [i, h === null])).toEqual([
        [0, true],
        [1, false],
        [2, false],
        [10, false],
      ]);
      expect(p2.stats.changedChunks).toBe(4);
      expect(p2.parentId).toBe(p1.id);
      expect(uploaded).toBe(3);
      // Unchanged chunks are the parent's objects: same names, and no object beyond the two disks' chunks.
      const [c1, c2] = [await store.diskChunks(p1, 'disk0'), await store.diskChunks(p2, 'disk0')];
      for (const i of [3, 4, 5, 6, 7, 8, 9]) expect(c2[i]).toBe(c1[i]);
      expect(await storedChunkHashes(store)).toEqual(uniqueChunks(disk1, disk2));

      await expectRestores(p1, disk1, 'p1.img');
      await expectRestores(p2, disk2, 'p2.img');
    });

    it("records each disk's churn in the manifest, the point's stats add them up, and the vault's record carries them", async () => {
      const disk = sampleDisk();
      const { point: first } = await commitDisk(store, disk);
      expect(first.disks).toMatchObject([{ name: 'disk0', changedChunks: 6, changedBytes: 5 * CHUNK + 1000 }]);
      const chunk = randomBytes(CHUNK);
      const hash = chunkHash(chunk);
      await store.putChunk(hash, chunk);
      const next = await store.commitPoint({
        replicationId: REP, parentId: first.id, capturedAt: new Date(), consistency: 'crash',
        disks: [{ name: 'disk0', sizeBytes: SIZE, changes: [[3, hash], [10, null]] }, { name: 'disk1', sizeBytes: SIZE, changes: [] }],
      });
      expect(next.disks.map((d) => [d.name, d.changedChunks, d.changedBytes])).toEqual([['disk0', 2, CHUNK + 1000], ['disk1', 0, 0]]);
      expect(next.stats).toMatchObject({ changedChunks: 2, changedBytes: CHUNK + 1000 });
      expect((await store.getPoint(REP, next.id)).disks).toEqual(next.disks);
      expect(pointRecord(next).diskChurn).toEqual([{ name: 'disk0', changedBytes: CHUNK + 1000 }, { name: 'disk1', changedBytes: 0 }]);
      // A manifest from before per-disk churn: the record leaves it out rather than reporting zeros.
      const { changedChunks: _c, changedBytes: _b, ...old } = next.disks[0] as DiskManifest;
      expect(pointRecord({ ...next, disks: [old] }).diskChurn).toBeUndefined();
    });

    it("commits in a replication's own chunk size; a disk changing chunk size must list every chunk", async () => {
      const disk = sampleDisk();
      const { point: first } = await commitDisk(store, disk);
      const big = 2 * CHUNK;
      const changed = Buffer.from(disk);
      changed[4 * CHUNK + 7] = 0x42;
      // Listing only what changed would leave the rest of the disk as zeros: refused, nothing committed.
      const hash = chunkHash(changed.subarray(2 * big, 3 * big));
      await store.putChunk(hash, changed.subarray(2 * big, 3 * big));
      await expectRefugeError(
        store.commitPoint({ replicationId: REP, parentId: first.id, capturedAt: new Date(), consistency: 'crash', chunkSize: big, disks: [{ name: 'disk0', sizeBytes: SIZE, changes: [[2, hash]] }] }),
        'invalid_argument',
        'every chunk must be listed',
      );
      expect(await store.listPointIds(REP)).toEqual([first.id]);
      const unknown = new Array<string>(Math.ceil(SIZE / big)).fill('f'.repeat(64)); // nothing known: every chunk listed, zeros too
      const { point: second } = await commitDisk(store, changed, { parent: first, previous: unknown, chunkSize: big });
      expect(second.disks).toMatchObject([{ chunkSize: big, sizeBytes: SIZE }]);
      await expectRestores(second, changed, 'rechunked');
      const { point: third } = await commitDisk(store, disk, { parent: second, chunkSize: big });
      expect(third.stats.changedChunks).toBe(1);
      await expectRestores(third, disk, 'rechunked-back');
      await expectRestores(first, disk, 'first-after-rechunk');
      expect(await store.diffPoints(first, second)).toEqual([{ disk: 'disk0', ranges: [{ offset: 0, length: SIZE }] }]);
    });

    it('does not count a change that repeats the parent chunk', async () => {
      const disk = sampleDisk();
      const { point: p1 } = await commitDisk(store, disk);
      const same = (await store.diskChunks(p1, 'disk0'))[2] as string;
      const p2 = await store.commitPoint({
        replicationId: REP,
        parentId: p1.id,
        capturedAt: new Date(),
        consistency: 'crash',
        disks: [{ name: 'disk0', sizeBytes: SIZE, changes: [[2, same], [4, null]] }],
      });
      expect(p2.stats.changedChunks).toBe(0);
      expect(p2.disks).toEqual(p1.disks.map((d) => ({ ...d, changedChunks: 0, changedBytes: 0 }))); // the same tree, nothing changed
    });

    it('fails with not_found when the parent point does not exist, and commits nothing', async () => {
      await expectRefugeError(
        store.commitPoint({ replicationId: REP, parentId: 'pt_000000000_aaaaaaaa', capturedAt: new Date(), consistency: 'crash', disks: [] }),
        'not_found',
      );
      expect(await store.listPointIds(REP)).toEqual([]);
    });
  });

  describe('putChunk', () => {
    it('rejects bytes that do not hash to the claimed hash and stores nothing', async () => {
      const data = randomBytes(CHUNK);
      const claimed = chunkHash(randomBytes(CHUNK));
      await expectRefugeError(store.putChunk(claimed, data), 'integrity', claimed);
      // Nor under the bytes' true name: the upload as a whole was bad.
      expect(await storedChunkHashes(store)).toEqual([]);
      expect(await store.missingChunks([claimed, chunkHash(data)])).toHaveLength(2);
    });

    it('rejects all-zero chunks, full or short, and stores nothing', async () => {
      for (const zeros of [Buffer.alloc(CHUNK), Buffer.alloc(1000)]) {
        await expectRefugeError(store.putChunk(chunkHash(zeros), zeros), 'invalid_argument', 'zero');
      }
      expect(await storedChunkHashes(store)).toEqual([]);
    });

    it('rejects empty and oversized chunks', async () => {
      for (const data of [Buffer.alloc(0), Buffer.alloc(MAX_CHUNK_SIZE + 1, 1)]) {
        await expectRefugeError(store.putChunk(chunkHash(data), data), 'invalid_argument');
      }
      expect(await storedChunkHashes(store)).toEqual([]);
    });

    it('stores a good chunk under its hash; missingChunks then leaves it out', async () => {
      const data = randomBytes(CHUNK);
      const h = chunkHash(data);
      expect(await store.missingChunks([h, h])).toEqual([h]);
      await store.putChunk(h, data);
      expectSameBytes(await store.getChunk(h), data);
      expect(await store.missingChunks([h])).toEqual([]);
      await expectRefugeError(store.missingChunks(['not-a-hash']), 'invalid_argument');
    });
  });

  describe('putPatchedChunk', () => {
    /** A chunk made from `base` with one run changed, and the patch carrying that run. */
    const patched = (base: Buffer) => {
      const chunk = Buffer.from(base);
      randomBytes(512).copy(chunk, 1024);
      return { chunk, patch: encodePatch(chunk, [[1024, 512]]) };
    };
    /** A base stored and written to its pack (a commit writes the packs), as a cdp point's parent chunk is. */
    const writtenBase = async () => {
      const base = Buffer.concat([randomBytes(CHUNK / 2), Buffer.alloc(CHUNK / 2, 3)]); // compressed in the pack
      await commitDisk(store, base);
      expect(store.blobs.localLocation(chunkHash(base))).toBeDefined();
      return base;
    };

    it('rebuilds from a base the worker reads from its pack file, from a base still pending, and from zeros', async () => {
      const getRange = t.backend.getRange.bind(t.backend);
      let rangeReads = 0;
      t.backend.getRange = (...a) => (rangeReads++, getRange(...a));
      const written = await writtenBase();
      const readsBefore = rangeReads;
      for (const base of [written, randomBytes(CHUNK), null]) {
        if (base && !store.blobs.has(chunkHash(base))) await store.putChunk(chunkHash(base), base); // pending: in memory
        const { chunk, patch } = patched(base ?? Buffer.alloc(CHUNK));
        expect(await store.putPatchedChunk(chunkHash(chunk), base && chunkHash(base), patch, CHUNK)).toBe(CHUNK);
        if (base === written) expect(rangeReads).toBe(readsBefore); // the worker read it, not the main thread
        expectSameBytes(await store.getChunk(chunkHash(chunk)), chunk);
      }
    });

    it('reads the base itself when its pack file is not where the backend says (moved since): still rebuilt', async () => {
      const base = await writtenBase();
      (t.backend as { localFile?: (key: string) => string }).localFile = (key) => join(t.root, 'moved', key);
      const { chunk, patch } = patched(base);
      await store.putPatchedChunk(chunkHash(chunk), chunkHash(base), patch, CHUNK);
      expectSameBytes(await store.getChunk(chunkHash(chunk)), chunk);
    });

    it('refuses a patch of a damaged base (failed_precondition: send it whole) and of a base it lacks, storing nothing', async () => {
      const base = await writtenBase();
      const loc = store.blobs.location(chunkHash(base));
      if (!loc) throw new Error('base not indexed');
      // The damage lies outside the bytes the patch replaces (the base's hash is checked when the result is wrong).
      await flipByte(join(t.root, ...packOf(store, chunkHash(base)).split('/')), loc.offset + loc.length - 4);
      const { chunk, patch } = patched(base);
      await expectRefugeError(store.putPatchedChunk(chunkHash(chunk), chunkHash(base), patch, CHUNK), 'failed_precondition', 'damaged');
      await expectRefugeError(store.putPatchedChunk(chunkHash(chunk), chunkHash(randomBytes(8)), patch, CHUNK), 'failed_precondition', 'not stored');
      expect(await store.missingChunks([chunkHash(chunk)])).toEqual([chunkHash(chunk)]);
    });

    it('stores the right chunk when the only damage to its base lies in bytes the patch replaces', async () => {
      const base = Buffer.concat([randomBytes(CHUNK / 2), Buffer.alloc(CHUNK / 2, 3)]);
      await commitDisk(store, base); // compressed: the random half is kept as it is, at the frame's start
      const loc = store.blobs.location(chunkHash(base));
      if (!loc) throw new Error('base not indexed');
      const chunk = Buffer.from(base);
      randomBytes(1024).copy(chunk, 0);
      await flipByte(join(t.root, ...packOf(store, chunkHash(base)).split('/')), loc.offset + 400); // inside the first KiB
      expect(await store.putPatchedChunk(chunkHash(chunk), chunkHash(base), encodePatch(chunk, [[0, 1024]]), CHUNK)).toBe(CHUNK);
      expectSameBytes(await store.getChunk(chunkHash(chunk)), chunk);
    });

    it('tells the sender to send a chunk whole when its patch rebuilds zeros from a base that was zeroed on disk', async () => {
      const base = randomBytes(CHUNK); // stored as it is (random bytes do not compress)
      await commitDisk(store, base);
      const loc = store.blobs.location(chunkHash(base));
      if (!loc) throw new Error('base not indexed');
      const pack = join(t.root, ...packOf(store, chunkHash(base)).split('/'));
      const bytes = await readFile(pack);
      bytes.fill(0, loc.offset, loc.offset + loc.length); // a crash left the base's bytes zero
      await writeFile(pack, bytes);
      const chunk = Buffer.alloc(CHUNK); // the guest discarded the chunk's first KiB: the rest is still the base
      base.copy(chunk, 1024, 1024);
      await expectRefugeError(store.putPatchedChunk(chunkHash(chunk), chunkHash(base), encodePatch(chunk, [[0, 1024]]), CHUNK), 'failed_precondition', 'damaged');
    });

    it('rebuilds a group in one call: one outcome per patch, in order, whatever becomes of the others', async () => {
      const written = await writtenBase();
      const pending = randomBytes(CHUNK);
      await store.putChunk(chunkHash(pending), pending);
      const good = [written, pending, null, written].map((b, n) => {
        const chunk = Buffer.from(b ?? Buffer.alloc(CHUNK));
        randomBytes(512).copy(chunk, 512 * n);
        return { chunk, upload: { hash: chunkHash(chunk), base: b && chunkHash(b), patch: encodePatch(chunk, [[512 * n, 512]]), chunkLength: CHUNK } };
      });
      const wrong = { ...(good[0] as { upload: PatchUpload }).upload, hash: chunkHash(randomBytes(CHUNK)) };
      const lacking = { ...(good[1] as { upload: PatchUpload }).upload, base: chunkHash(randomBytes(CHUNK)) };
      const uploads: PatchUpload[] = good.map((g) => g.upload);
      uploads.splice(1, 0, wrong);
      uploads.splice(3, 0, lacking);
      const outcomes = await store.putPatchedChunks(uploads);
      expect(outcomes.map((o) => ('error' in o ? o.error.code : o.rawLength))).toEqual([CHUNK, 'integrity', CHUNK, 'failed_precondition', CHUNK, CHUNK]);
      for (const { chunk } of good) expectSameBytes(await store.getChunk(chunkHash(chunk)), chunk);
      expect(await store.missingChunks([wrong.hash])).toEqual([wrong.hash]);
    });

    it('refuses a patch that rebuilds other bytes than its hash names (integrity), storing nothing', async () => {
      const base = await writtenBase();
      const { patch } = patched(base);
      const claimed = chunkHash(randomBytes(CHUNK));
      await expectRefugeError(store.putPatchedChunk(claimed, chunkHash(base), patch, CHUNK), 'integrity');
      expect(await store.missingChunks([claimed])).toEqual([claimed]);
    });
  });

  describe('commitPoint', () => {
    const commit = (changes: [number, string | null][]) =>
      store.commitPoint({ replicationId: REP, parentId: null, capturedAt: new Date(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: SIZE, changes }] });

    it('fails with failed_precondition when a referenced chunk was never uploaded, and writes no manifest', async () => {
      const a = randomBytes(CHUNK);
      await store.putChunk(chunkHash(a), a);
      const never = chunkHash(randomBytes(CHUNK));
      const err = await expectRefugeError(commit([[0, chunkHash(a)], [1, never]]), 'failed_precondition');
      expect(err.details.missing).toEqual([never]);
      expect(await t.backend.list('points/')).toEqual([]);
      expect(await store.listPointIds(REP)).toEqual([]);
    });

    it('rejects chunk indexes outside the disk and malformed hashes, and writes no manifest', async () => {
      const a = randomBytes(CHUNK);
      await store.putChunk(chunkHash(a), a);
      for (const index of [-1, 11, 12, 1.5, Number.NaN]) {
        await expectRefugeError(commit([[index, chunkHash(a)]]), 'invalid_argument');
      }
      await expectRefugeError(commit([[0, 'ABC']]), 'invalid_argument');
      expect(await t.backend.list('points/')).toEqual([]);
    });
  });

  describe('damage', () => {
    // Chunks 0, 2 and 10 hold data; the tests damage chunk 2 and check the damage is named and contained.
    let disk: Buffer;
    let point: PointManifest;
    let victim: string;
    /** The victim's pack file, and where in it the victim's stored bytes are. */
    const victimPlace = (): { path: string; key: string; offset: number; length: number } => {
      const key = packOf(store, victim);
      const loc = store.blobs.location(victim);
      if (!loc) throw new Error('victim not indexed');
      return { path: join(t.root, ...key.split('/')), key, offset: loc.offset, length: loc.length };
    };

    beforeEach(async () => {
      disk = Buffer.alloc(SIZE);
      for (const i of [0, 2, 10]) randomBytes(chunkOf(disk, i).length).copy(disk, i * CHUNK);
      ({ point } = await commitDisk(store, disk));
      victim = (await store.diskChunks(point, 'disk0'))[2] as string;
    });

    async function expectDamageReported(options: { restContained: boolean }): Promise<void> {
      const key = victimPlace().key;
      await expectRefugeError(store.readRange(point, 'disk0', 0, SIZE), 'integrity', key, point.id);
      await expectRefugeError(store.readRange(point, 'disk0', 3 * CHUNK - 1, 1), 'integrity', key, point.id);
      await expectRefugeError(store.materialize(point, 'disk0', t.imagePath('bad.img')), 'integrity', key, point.id);
      const problems = await store.verifyPoint(point);
      expect(problems.length).toBeGreaterThan(0);
      expect(new Set(problems.map((p) => p.object))).toEqual(new Set([key]));
      expect(problems.some((p) => p.problem.includes(victim) && p.problem.includes(point.id))).toBe(true);
      // The rest of the point still reads: the damage is contained to its chunk (chunk 0 lies before it in the pack).
      if (options.restContained) expectSameBytes(await store.readRange(point, 'disk0', 0, 2 * CHUNK), disk.subarray(0, 2 * CHUNK), 'undamaged chunks');
    }

    it('detects one flipped byte in a stored chunk (bit rot), naming the pack, the chunk and the point', async () => {
      const v = victimPlace();
      await flipByte(v.path, v.offset + Math.floor(v.length / 2));
      await expectDamageReported({ restContained: true });
    });

    it('detects a pack cut in the middle of a chunk', async () => {
      const v = victimPlace();
      await truncate(v.path, v.offset + Math.floor(v.length / 2));
      await expectDamageReported({ restContained: true });
    });

    it('detects a pack that disappeared', async () => {
      await unlink(victimPlace().path);
      await expectDamageReported({ restContained: false });
    });

    it('detects one flipped byte in a manifest, naming the manifest', async () => {
      const key = `points/${REP}/${point.id}.json`;
      const other = (await commitDisk(store, disk, { parent: point })).point;
      const path = join(t.root, 'points', REP, `${point.id}.json`);
      await flipByte(path, Math.floor((await stat(path)).size / 3));
      await expectRefugeError(store.getPoint(REP, point.id), 'integrity', key);
      expect(await store.getPoint(REP, other.id)).toEqual(other); // other points are unaffected
    });

    it('detects a flipped byte in the checksum line of a manifest, and a truncated manifest', async () => {
      const key = `points/${REP}/${point.id}.json`;
      const path = join(t.root, 'points', REP, `${point.id}.json`);
      const original = await readFile(path);
      await flipByte(path, original.length - 5);
      await expectRefugeError(store.getPoint(REP, point.id), 'integrity', key);
      await writeFile(path, original.subarray(0, Math.floor(original.length / 2)));
      await expectRefugeError(store.getPoint(REP, point.id), 'integrity', key);
    });
  });

  describe('listPointIds', () => {
    it('returns a replication’s points oldest first, by capture time, and only that replication’s', async () => {
      const disk = sampleDisk();
      const t0 = Date.UTC(2026, 0, 1);
      // Committed out of capture order, so commit order cannot explain the result.
      const late = (await commitDisk(store, disk, { capturedAt: new Date(t0 + 2000) })).point;
      const early = (await commitDisk(store, disk, { capturedAt: new Date(t0) })).point;
      const middle = (await commitDisk(store, disk, { capturedAt: new Date(t0 + 1000) })).point;
      await commitDisk(store, disk, { replicationId: 'rep_test2', capturedAt: new Date(t0 - 5000) });
      expect(await store.listPointIds(REP)).toEqual([early.id, middle.id, late.id]);
      expect(await store.listPointIds('rep_none')).toEqual([]);
    });

    it('forgets a deleted point', async () => {
      const { point } = await commitDisk(store, sampleDisk());
      await store.deletePoint(REP, point.id);
      expect(await store.listPointIds(REP)).toEqual([]);
      await expectRefugeError(store.getPoint(REP, point.id), 'not_found');
    });
  });

  describe('open', () => {
    it('reopens an existing store with the chunk size it was created with', async () => {
      const again = await ReplicaStore.open(t.backend, { create: true, chunkSize: 8 * CHUNK });
      expect(again.chunkSize).toBe(CHUNK);
      expect(again.config).toEqual(store.config);
    });

    it('fails with not_found on an empty backend unless asked to create', async () => {
      const empty = await FilesystemBackend.create(join(t.dir.path, 'empty'));
      await expectRefugeError(ReplicaStore.open(empty), 'not_found');
      expect(await empty.list('')).toEqual([]);
    });

    it('refuses an unusable chunk size without leaving a store behind', async () => {
      const backend = await FilesystemBackend.create(join(t.dir.path, 'typo'));
      await expectRefugeError(ReplicaStore.open(backend, { create: true, chunkSize: 1000 }), 'invalid_argument');
      // A typo must not brick the location: nothing was written, and a correct retry creates the store.
      expect(await backend.list('')).toEqual([]);
      const fixed = await ReplicaStore.open(backend, { create: true, chunkSize: CHUNK });
      expect(fixed.chunkSize).toBe(CHUNK);
    });
  });
});
