import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { CHUNK, commitDisk, openTempStore, type TempStore } from '../store/fixtures.js';

/**
 * Found by the kill -9 harness (R1): the vault's replicator committed points while the standalone replicator was
 * down; the standalone one, back, could not commit on top of them ("blob ... is missing from the store (tree
 * node)") because its index was loaded before those points and a blob it did not know was taken for missing
 * without a look at the index files written meanwhile. Two store instances on one backend take turns here.
 */
describe('two writers on one store (the vault and a standalone replicator)', () => {
  let t: TempStore;
  afterEach(async () => t.dir.cleanup());

  it('commits on top of points another process committed after this one loaded its index', async () => {
    t = await openTempStore();
    const other = await ReplicaStore.open(t.backend); // loaded now, before the points below exist
    const disk = randomBytes(64 * CHUNK);
    const first = await commitDisk(t.store, disk);
    randomBytes(CHUNK).copy(disk, 10 * CHUNK);
    const second = await commitDisk(t.store, disk, { parent: first.point });

    randomBytes(CHUNK).copy(disk, 20 * CHUNK);
    const third = await commitDisk(other, disk, { parent: second.point });
    expect(third.uploaded).toBe(1);
    expect((await other.readRange(third.point, 'disk0', 0, disk.length)).equals(disk)).toBe(true);
    expect((await t.store.readRange(third.point, 'disk0', 0, disk.length)).equals(disk)).toBe(true);
  });
});
