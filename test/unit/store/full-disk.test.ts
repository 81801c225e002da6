import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { verifyStore } from '../../../src/store/verify.js';
import { expectRefugeError } from './expect-error.js';
import { commitDisk, expectSameBytes, makeTempDir, type TempDir } from './fixtures.js';

/**
 * A replica store on a full filesystem (a real 8 MiB tmpfs, mounted here; tests run as root, as CI does): a commit
 * that does not fit fails with a clear `resource_exhausted` error and commits nothing, the store still opens and
 * verifies, and once space is freed commits succeed again (reliability R3).
 */

let tmp: TempDir;
let mountPoint: string;

beforeAll(async () => {
  tmp = await makeTempDir('refuge-full-');
  mountPoint = join(tmp.path, 'small');
  await mkdir(mountPoint);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint]);
});
afterAll(async () => {
  execFileSync('umount', [mountPoint]);
  await tmp.cleanup();
});

describe('replica store on a full disk', () => {
  it('fails a commit that does not fit cleanly, keeps every earlier point, and recovers when space is freed', async () => {
    const root = join(mountPoint, 'store');
    const store = await ReplicaStore.open(await FilesystemBackend.create(root), { create: true, chunkSize: 64 * 1024, packSize: 512 * 1024 });
    const small = randomBytes(2 * 1024 * 1024);
    const { point: first } = await commitDisk(store, small);
    // Something else fills half the filesystem, then a commit of 4 MiB of new data cannot fit.
    execFileSync('dd', ['if=/dev/zero', `of=${join(mountPoint, 'filler')}`, 'bs=1M', 'count=4', 'status=none']);
    const big = randomBytes(4 * 1024 * 1024);
    const err = await expectRefugeError(commitDisk(store, big, { parent: first }), 'resource_exhausted');
    expect(err.hint).toContain('free space');
    expect(await store.listPointIds('rep_test')).toEqual([first.id]);
    // No half-written objects remain visible, and the store opens and verifies.
    const reopened = await ReplicaStore.open(new FilesystemBackend(root));
    expect((await verifyStore(reopened)).problems).toEqual([]);
    await reopened.materialize(await reopened.getPoint('rep_test', first.id), 'disk0', join(tmp.path, 'first.img'));
    expectSameBytes(await readFile(join(tmp.path, 'first.img')), small, 'first point');
    expect((await readdir(root, { recursive: true })).filter((n) => n.includes('.tmp'))).toEqual([]);
    // Space freed: the same commit now succeeds (the chunks lost with the failed packs are uploaded again).
    await rm(join(mountPoint, 'filler'));
    const { point: second } = await commitDisk(store, big, { parent: first });
    await store.materialize(second, 'disk0', join(tmp.path, 'second.img'));
    expectSameBytes(await readFile(join(tmp.path, 'second.img')), big, 'second point');
    await store.close();
    await reopened.close();
  });
});
