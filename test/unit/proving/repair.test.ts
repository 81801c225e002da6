import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { packKey } from '../../../src/store/pack.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { repairStore, takeResyncRequest } from '../../../src/store/repair.js';
import { verifyStore } from '../../../src/store/verify.js';
import { CHUNK, commitDisk, flipByte, hashChunks, openTempStore, type TempStore } from '../store/fixtures.js';

/**
 * `refuge store repair` at the store level, in a fresh process's view (no node cache): a tree node lost to bit rot
 * is dropped, the replication is asked to resynchronize once, and the resync's commit (every chunk listed) builds
 * the tree anew on top of the damaged point, storing the lost node again; every point is whole afterwards.
 */
describe('store repair', () => {
  let t: TempStore;
  afterEach(async () => t.dir.cleanup());

  it('rebuilds a lost tree node from a full listing committed on the damaged point', async () => {
    t = await openTempStore();
    const disk = randomBytes(300 * CHUNK); // two leaves and a root
    const first = await commitDisk(t.store, disk);
    randomBytes(CHUNK).copy(disk, 5 * CHUNK);
    const second = await commitDisk(t.store, disk, { parent: first.point });
    const root = second.point.disks[0]?.root as string;
    const loc = t.store.blobs.location(root);
    if (!loc) throw new Error('root not indexed');
    await flipByte(join(t.root, packKey(loc.packId)), loc.offset + 3);

    const fresh = await ReplicaStore.open(t.backend);
    const repaired = await repairStore(fresh);
    expect(repaired.lost.map((b) => [b.hash, b.type])).toEqual([[root, 'tree']]);
    expect(repaired.resyncRequested).toEqual(['rep_test']);
    expect(await takeResyncRequest(fresh, 'rep_test')).toBe(true);
    expect(await takeResyncRequest(fresh, 'rep_test')).toBe(false); // once

    // The agent's resync: every chunk listed against the damaged latest point.
    const resync = await commitDisk(fresh, disk, { parent: second.point, previous: new Array<string | null>(hashChunks(disk, CHUNK).length).fill('') });
    expect(resync.point.disks[0]?.root).toBe(root);
    expect((await fresh.readRange(second.point, 'disk0', 0, disk.length)).equals(disk)).toBe(true);
    expect((await verifyStore(fresh)).problems).toEqual([]);
  });
});
