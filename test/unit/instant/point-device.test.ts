import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RefugeError } from '../../../src/core/errors.js';
import { run } from '../../../src/core/processes.js';
import { PointBlockDevice } from '../../../src/instant/point-device.js';
import { PointExports } from '../../../src/instant/point-exports.js';
import type { PointManifest } from '../../../src/store/manifest.js';
import { commitDisk, expectSameBytes, flipByte, openTempStore, packOf, seededBytes, type TempStore } from '../store/fixtures.js';

const CHUNK = 4096;

/** A disk of data chunks with zero chunks between them (zeros are never stored, so they are served without reads). */
function diskImage(): Buffer {
  const disk = seededBytes(7, 64 * CHUNK);
  for (let i = 0; i < 64; i += 3) disk.fill(0, i * CHUNK, (i + 1) * CHUNK);
  return disk;
}

describe('a recovery point served as a block device', () => {
  let t: TempStore;
  let disk: Buffer;
  let point: PointManifest;
  beforeEach(async () => {
    t = await openTempStore(CHUNK);
    disk = diskImage();
    ({ point } = await commitDisk(t.store, disk));
  });
  afterEach(async () => {
    await t.store.close();
    await t.dir.cleanup();
  });

  it('reads any byte range as the point holds it, zero chunks included', async () => {
    const device = new PointBlockDevice(t.store, point, 'disk0', { cacheChunks: 4 });
    expect(device.sizeBytes).toBe(disk.length);
    expect(device.readOnly).toBe(true);
    for (const [offset, length] of [[0, 512], [CHUNK - 100, 300], [3 * CHUNK, CHUNK], [5 * CHUNK + 1, 9 * CHUNK], [disk.length - 512, 512], [0, disk.length]] as const) {
      const out = Buffer.alloc(length);
      await device.read(out, offset);
      expectSameBytes(out, disk.subarray(offset, offset + length), `range ${offset}+${length}`);
    }
    expect(device.stats.retries).toBe(0);
  });

  it('holds a read while the store is unavailable and answers once it is back', async () => {
    const device = new PointBlockDevice(t.store, point, 'disk0', { readAhead: 0 });
    const real = t.store.getChunk.bind(t.store);
    let failures = 3;
    // Stand-in for a dropped link (the e2e test cuts a real object store's): the next reads fail as a network would.
    t.store.getChunk = async (hash, context) => {
      if (failures-- > 0) throw new RefugeError('unavailable', 'connect ECONNREFUSED 127.0.0.1:9');
      return real(hash, context);
    };
    const out = Buffer.alloc(CHUNK);
    await device.read(out, CHUNK);
    expectSameBytes(out, disk.subarray(CHUNK, 2 * CHUNK));
    expect(device.stats.retries).toBe(3);
    expect(device.stats.failedReads).toBe(0);
  });

  it('gives up on a store read that hangs (a link dropping packets) and tries again', async () => {
    const device = new PointBlockDevice(t.store, point, 'disk0', { readAhead: 0, attemptTimeoutMs: 200 });
    const real = t.store.getChunk.bind(t.store);
    let hangs = 1;
    t.store.getChunk = async (hash, context) => (hangs-- > 0 ? new Promise<Buffer>(() => undefined) : real(hash, context));
    const out = Buffer.alloc(CHUNK);
    await device.read(out, 4 * CHUNK);
    expectSameBytes(out, disk.subarray(4 * CHUNK, 5 * CHUNK));
    expect(device.stats.retries).toBe(1);
    expect(device.stats.lastError).toMatch(/did not answer/);
  });

  it('fails a read of damaged data at once (EIO), without retrying', async () => {
    const hash = (await t.store.diskChunks(point, 'disk0'))[1] as string;
    await flipByte(join(t.root, ...packOf(t.store, hash).split('/')), (t.store.blobs.location(hash)?.offset ?? 0) + 20);
    const device = new PointBlockDevice(t.store, point, 'disk0', { readAhead: 0 });
    await expect(device.read(Buffer.alloc(CHUNK), CHUNK)).rejects.toMatchObject({ code: 'EIO' });
    expect(device.stats.retries).toBe(0);
    expect(device.stats.failedReads).toBe(1);
  });

  it('is served over NBD to a real client (qemu-img), which copies the point byte for byte', async () => {
    const exports = new PointExports();
    try {
      const served = await exports.serve('m1', join(t.dir.path, 'point.sock'), t.store, point);
      expect(await exports.serve('m1', join(t.dir.path, 'point.sock'), t.store, point)).toBe(served); // idempotent
      const copy = join(t.dir.path, 'copy.raw');
      const r = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', '-m', '8', '-W', served.uri('disk0'), copy], { timeoutMs: 60_000 });
      expect(r.code, r.stderr).toBe(0);
      expectSameBytes(await readFile(copy), disk, 'copied point');
      const stats = await exports.stats('m1');
      expect(stats.disk0?.readRequests).toBeGreaterThan(0);
    } finally {
      await exports.closeAll();
    }
    expect(await exports.get('m1')).toBeUndefined();
  });
});
