import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChangeTracker } from '../../../src/agent/cdp/change-tracker.js';
import { CowStore } from '../../../src/agent/cdp/cow-store.js';
import { TrackedDevice } from '../../../src/agent/cdp/tracked-device.js';
import { ASYNC_WRITE_MIN_BYTES, FileBlockDevice } from '../../../src/nbd/block-device.js';

const MiB = 1024 * 1024;
const SIZE = 4 * MiB;
const filled = (byte: number, length = MiB) => Buffer.alloc(length, byte);
const tick = () => new Promise((r) => setImmediate(r));

/**
 * Large writes are applied on the thread pool (FileBlockDevice), so a cut must not run while one is half applied:
 * `quiesce` holds new writes and waits for those in flight. These tests drive the device directly, so the
 * interleaving is certain rather than left to a socket's timing.
 */
describe('tracked device: writes in flight and cuts', () => {
  let dir: string;
  let file: FileBlockDevice;
  let cow: CowStore;
  let tracker: ChangeTracker;
  let device: TrackedDevice;
  const onDisk = async (offset: number, length = MiB) => (await readFile(join(dir, 'disk.raw'))).subarray(offset, offset + length);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rtracked-'));
    await writeFile(join(dir, 'disk.raw'), Buffer.alloc(SIZE));
    file = FileBlockDevice.open(join(dir, 'disk.raw'));
    cow = new CowStore(join(dir, 'cow.bin'));
    tracker = new ChangeTracker(SIZE, cow, undefined);
    device = new TrackedDevice(file, tracker);
  });
  afterEach(async () => {
    await file.settled();
    file.close();
    cow.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('applies a large write asynchronously and a small one before returning', async () => {
    expect(device.write([filled(1, 4096)], 0, false)).toBeUndefined();
    expect((await onDisk(0, 4096)).equals(filled(1, 4096))).toBe(true);
    const large = device.write([filled(2, ASYNC_WRITE_MIN_BYTES / 2), filled(3, ASYNC_WRITE_MIN_BYTES / 2)], MiB, false);
    expect(large).toBeInstanceOf(Promise);
    await file.settled();
    expect((await onDisk(MiB, ASYNC_WRITE_MIN_BYTES)).equals(Buffer.concat([filled(2, ASYNC_WRITE_MIN_BYTES / 2), filled(3, ASYNC_WRITE_MIN_BYTES / 2)]))).toBe(true);
    await large;
  });

  it('quiesce waits for the writes in flight and holds new ones, so a cut sees each write wholly or not at all', async () => {
    const before = [0, 1, 2].map((n) => device.write([filled(0x10 + n)], n * MiB, false));
    const quiet = device.quiesce();
    const after = device.write([filled(0x20)], 0, false); // arrives once the cut has begun: must not be in the point
    expect(file.writesInFlight).toBe(3);
    const release = await quiet;
    expect(file.writesInFlight).toBe(0);
    // Read and cut in the same turn of the event loop as the quiesce resolved: nothing may be half applied now.
    const now = (offset: number) => {
      const t = Buffer.alloc(MiB);
      file.read(t, offset);
      return t;
    };
    for (const n of [0, 1, 2]) expect(now(n * MiB).equals(filled(0x10 + n))).toBe(true);
    const cut = tracker.cut(MiB);
    release();
    await Promise.all([...before, after]);
    expect((await onDisk(0)).equals(filled(0x20))).toBe(true);
    // The point holds the writes started before the cut, whole; the later write went to the copy-on-write store.
    const readLive = (t: Buffer, at: number) => file.read(t, at);
    expect(cut.chunkIndexes).toEqual([0, 1, 2]);
    for (const n of [0, 1, 2]) expect(cut.readChunk(n, readLive).equals(filled(0x10 + n))).toBe(true);
    tracker.complete(cut);
  });

  it('closes under a write in flight only once it has landed; later calls are refused', async () => {
    const large = device.write([filled(0x41)], MiB, false);
    expect(file.writesInFlight).toBe(1);
    file.close();
    await large;
    expect((await onDisk(MiB)).equals(filled(0x41))).toBe(true);
    expect(() => file.read(Buffer.alloc(512), 0)).toThrow(/closed/);
    await expect(Promise.resolve().then(() => file.write([filled(1)], 0, false))).rejects.toMatchObject({ code: 'ESHUTDOWN' });
  });

  it('holds nest: writes wait for the last release', async () => {
    const outer = device.hold(); // a consistency group's barrier
    const inner = device.hold(); // the cut inside it
    const large = device.write([filled(0x31)], 0, false);
    const small = device.write([filled(0x32, 4096)], 2 * MiB, false);
    inner();
    inner(); // a second call of the same release does nothing
    await tick();
    await file.settled();
    expect((await onDisk(0)).equals(filled(0))).toBe(true);
    expect((await onDisk(2 * MiB, 4096)).equals(filled(0, 4096))).toBe(true);
    outer();
    await Promise.all([large, small]);
    expect((await onDisk(0)).equals(filled(0x31))).toBe(true);
    expect((await onDisk(2 * MiB, 4096)).equals(filled(0x32, 4096))).toBe(true);
  });

  it('reads a cut\'s chunks off the event loop exactly: writes landing during the read keep their cut-time bytes', async () => {
    const CHUNK = 256 * 1024;
    for (let n = 0; n < 4; n++) void device.write([filled(0x30 + n)], n * MiB, false);
    await file.settled();
    tracker.markAll();
    const release = await device.quiesce();
    const cut = tracker.cut(CHUNK);
    release();
    const atCut = await onDisk(0, 2 * MiB);
    // Chunks 0-7 (the first 2 MiB) read in one run; while the read is on the pool, the VM overwrites blocks in
    // several of them, small writes (applied at once) and a large one (on the pool too).
    const into = Buffer.alloc(2 * MiB);
    const reading = cut.readChunks(0, 8, into, (t, at) => device.readLiveBytesAsync(t, at));
    void device.write([filled(0x41, 4096)], 4096, false);
    void device.write([filled(0x42, 8192)], 3 * CHUNK + 100 * 4096, false);
    const large = device.write([filled(0x43, ASYNC_WRITE_MIN_BYTES)], MiB + CHUNK, false);
    await reading;
    await large;
    expect(into.equals(atCut)).toBe(true);
    // Released: later writes need no copy, and a second read is refused.
    expect(() => cut.readChunk(2, (t, at) => device.readLiveBytes(t, at))).toThrow(/not an unread chunk/);
    // A read that ends after its cut was abandoned overlays nothing (the copy-on-write store serves the next cut).
    const into2 = Buffer.alloc(CHUNK);
    const late = cut.readChunks(9, 1, into2, async (t, at) => {
      await tick();
      await device.readLiveBytesAsync(t, at);
    });
    tracker.abandon(cut);
    await expect(late).rejects.toThrow(/finished while chunks 9\+1 were read/);
  });

  it('reads only some ranges of a cut\'s chunk exactly (a format-3 point\'s written leaves), writes landing meanwhile', async () => {
    const CHUNK = 256 * 1024;
    void device.write([filled(0x50)], 0, false);
    await file.settled();
    tracker.markAll();
    const release = await device.quiesce();
    const cut = tracker.cut(CHUNK);
    release();
    const atCut = await onDisk(0, CHUNK);
    const into = Buffer.alloc(CHUNK, 0xee);
    const ranges: [number, number][] = [[0, 16384], [65536, 32768]];
    const reading = cut.readRanges(0, ranges, into, (t, at) => device.readLiveBytesAsync(t, at));
    void device.write([filled(0x51, 4096)], 4096, false); // inside the first range
    void device.write([filled(0x52, 4096)], 70_000 - (70_000 % 4096), false); // inside the second
    await reading;
    for (const [o, l] of ranges) expect(into.subarray(o, o + l).equals(atCut.subarray(o, o + l))).toBe(true);
    expect(() => cut.readChunk(0, (t, at) => device.readLiveBytes(t, at))).toThrow(/not an unread chunk/);
  });
});
