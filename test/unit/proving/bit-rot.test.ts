import { randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { listIndexedBlobs } from '../../../src/store/inspect.js';
import { packKey } from '../../../src/store/pack.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { repairStore } from '../../../src/store/repair.js';
import { verifyStore } from '../../../src/store/verify.js';
import { CHUNK, MiB, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';
import { figure } from '../../helpers/figures.js';

const DISK = 16 * MiB;
/** Data blobs whose stored bytes get one byte flipped (and one tree node): every one must be found, none returned as data. */
const FLIPS = 8;

/**
 * Reliability R4, bit rot: bytes flipped in stored objects of a store an agent replicates to. `verify` finds every
 * damaged blob and names its pack and the points it hurts; reads never return wrong bytes (an integrity error
 * instead); `refuge store repair` drops the damaged chunks and the agent sends them again from the source, after
 * which every point restores byte for byte and verify finds nothing, having shipped only the lost chunks.
 */
describe('R4 bit rot: verify finds every flipped byte, repair re-fetches from the source', () => {
  let f: AgentFixture;
  let diskPath: string;
  const storeDir = () => join(f.dir, 'vault', 'sites', 'recovery', 'store');
  const openStore = () => ReplicaStore.open(new FilesystemBackend(storeDir()));

  beforeEach(async () => {
    f = await startAgentFixture('rproving-rot-');
    diskPath = join(f.dir, 'disk0.raw');
    const disk = Buffer.alloc(DISK);
    randomBytes(12 * MiB).copy(disk, 2 * MiB); // incompressible chunks: every flipped byte lands in real data
    await writeFile(diskPath, disk);
  });
  afterEach(async () => f.close());

  it('finds 100% of flipped blobs, never returns wrong bytes, and repairs from the agent', async () => {
    const start = () => f.startAgent(new ScanCapture({ disks: [{ name: 'disk0', path: diskPath }] }), [{ name: 'disk0', sizeBytes: DISK }]);
    start();
    const rep = await f.enable();
    const first = await f.pointAfter(new Date(0));
    const handle = await open(diskPath, 'r+');
    await handle.write(randomBytes(CHUNK), 0, CHUNK, 14 * MiB); // a second point that changes one chunk
    await handle.close();
    const second = await f.pointAfter(new Date());
    await f.stopAgent();
    const source = await readFile(diskPath);

    // Flip one byte in each of FLIPS data blobs, at a random place inside the blob's stored bytes.
    const store = await openStore();
    // Chunks the source still holds (those of the latest point): the ones a repair can fetch again.
    const current = new Set(await store.diskChunks(await store.getPoint(rep, second.id), 'disk0'));
    // Also held by the first point: with the latest tree's root damaged too (below), a chunk only that tree reaches
    // could not be traced to any point, so verify could name its pack but not the points it hurts.
    const older = new Set(await store.diskChunks(await store.getPoint(rep, first.id), 'disk0'));
    const data = (await listIndexedBlobs(store)).filter((b) => b.type === 'data' && current.has(b.hash) && older.has(b.hash));
    // And the root of the latest point's hash tree: a lost tree node is rebuilt by the resync's commit.
    const root = (await store.getPoint(rep, second.id)).disks[0]?.root as string;
    const tree = (await listIndexedBlobs(store)).filter((b) => b.hash === root);
    expect(tree).toHaveLength(1);
    const victims = [...data.sort(() => Math.random() - 0.5).slice(0, FLIPS), ...tree];
    for (const b of victims) {
      const loc = store.blobs.location(b.hash);
      if (!loc) throw new Error(`blob ${b.hash} not indexed`);
      const file = await open(join(storeDir(), packKey(b.packId)), 'r+');
      const at = loc.offset + Math.floor(Math.random() * loc.length);
      const byte = Buffer.alloc(1);
      await file.read(byte, 0, 1, at);
      byte[0] = (byte[0] as number) ^ (1 << Math.floor(Math.random() * 8));
      await file.write(byte, 0, 1, at);
      await file.close();
    }

    // verify: every damaged blob found, named with its pack, and the points it hurts.
    const fresh = await openStore();
    const verified = await verifyStore(fresh);
    const found = victims.filter((b) => verified.problems.some((p) => p.object === packKey(b.packId) && p.problem.includes(b.hash)));
    expect(found.length).toBe(victims.length);
    for (const p of verified.problems) expect(p.points?.length ?? 0, p.problem).toBeGreaterThan(0);

    // Reads: an integrity error naming the pack, never wrong bytes.
    for (const id of [first.id, second.id]) {
      const point = await fresh.getPoint(rep, id);
      await expect(fresh.readRange(point, 'disk0', 0, DISK)).rejects.toMatchObject({ code: 'integrity', message: expect.stringMatching(/packs\//) as unknown });
      await expect(fresh.materialize(point, 'disk0', join(f.dir, `restored-${id}.raw`))).rejects.toMatchObject({ code: 'integrity' });
    }

    // Repair: damaged chunks become missing and the replication is asked to resynchronize.
    const repaired = await repairStore(fresh);
    await fresh.close();
    expect(new Set(repaired.lost.map((b) => b.hash))).toEqual(new Set(victims.map((b) => b.hash)));
    expect(repaired.resyncRequested).toEqual([rep]);
    const before = f.counters(rep)?.bytesReceived ?? 0;

    // The agent's next commit is refused once; it compares every chunk and sends exactly the lost ones again.
    const repairedAt = new Date();
    start();
    const third = await f.pointAfter(repairedAt);
    await waitFor(async () => (await verifyStore(await openStore())).problems.length === 0, 20_000, 'a store without problems');
    const shipped = (f.counters(rep)?.bytesReceived ?? 0) - before;
    expect(shipped).toBe(FLIPS * CHUNK);
    expect((await f.restore(rep, third.id)).equals(source)).toBe(true);
    expect((await f.restore(rep, second.id)).equals(source)).toBe(true);
    figure('R4', { flippedBlobs: victims.length, treeNodes: 1, found: found.length, wrongBytesReturned: 0, repairedChunks: repaired.lost.length, repairShippedBytes: shipped, diskBytes: DISK });
  });
});
