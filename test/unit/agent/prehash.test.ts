import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Cut } from '../../../src/agent/capture/capture-mode.js';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import { ChunkHashes } from '../../../src/agent/chunk-hashes.js';
import { narrowedCut, prehashCovers, prehashCut } from '../../../src/agent/prehash.js';
import { chunkHash } from '../../../src/store/chunks.js';

const CHUNK = 64 * 1024;
const SIZE = 16 * CHUNK;

/** The chunk hashes of an image, as a seed point in the store would list them. */
const hashesOf = (image: Buffer) => Array.from({ length: SIZE / CHUNK }, (_, i) => chunkHash(image.subarray(i * CHUNK, (i + 1) * CHUNK)));

/** Reads every chunk a cut lists (as shipping does) and returns the indexes with their bytes. */
async function readAll(cut: Cut): Promise<Map<number, Buffer>> {
  const disk = cut.disks[0];
  const got = new Map<number, Buffer>();
  for (const i of disk?.chunkIndexes ?? []) got.set(i, await (disk as NonNullable<typeof disk>).read(i));
  return got;
}

/**
 * A re-protect's pre-hash (src/agent/prehash.ts): the disks are hashed while the seed is made, and the cut shipped
 * against the seed is narrowed to the chunks that differ from it (plus those a tracking capture saw written since).
 */
describe('re-protect pre-hash', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('narrows a scan to the chunks whose pre-hash differs from the seed, dated at the pre-hash', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rag-prehash-'));
    const path = join(dir, 'disk0.raw');
    const seedImage = randomBytes(SIZE);
    const now = Buffer.from(seedImage);
    randomBytes(4096).copy(now, 3 * CHUNK + 8192); // chunk 3 differs from the seed
    randomBytes(4096).copy(now, 11 * CHUNK); // chunk 11 too
    await writeFile(path, now);
    const capture = new ScanCapture({ disks: [{ name: 'disk0', path }] });
    await capture.start();

    const first = await capture.cut({ chunkSize: CHUNK, everyChunk: true });
    const prehash = await prehashCut(first, { replicationId: 'r1', chunkSize: CHUNK, naming: 'sha256' });
    await first.complete();
    expect(Array.from({ length: SIZE / CHUNK }, (_, i) => prehash.hashes.disk0?.get(i))).toEqual(hashesOf(now));
    expect(prehash.readBytes).toBe(SIZE);

    const base = { disk0: ChunkHashes.fromList(hashesOf(seedImage)) };
    expect(prehashCovers(prehash, base, [{ name: 'disk0', sizeBytes: SIZE }])).toBe(true);
    expect(prehashCovers(prehash, base, [{ name: 'disk0', sizeBytes: 2 * SIZE }])).toBe(false);
    expect(prehashCovers(prehash, {}, [{ name: 'disk0', sizeBytes: SIZE }])).toBe(false);

    const second = await capture.cut({ chunkSize: CHUNK, everyChunk: false });
    const narrowed = narrowedCut(second, prehash, base);
    expect(narrowed?.disks[0]?.chunkIndexes).toEqual([3, 11]);
    // A scan lists every chunk, vouching for none: the point holds chunks read at the pre-hash, so it is dated there.
    expect(narrowed?.capturedAt).toBe(prehash.capturedAt);
    const read = await readAll(narrowed as Cut);
    expect(read.get(3)?.equals(now.subarray(3 * CHUNK, 4 * CHUNK))).toBe(true);
    expect(read.get(11)?.equals(now.subarray(11 * CHUNK, 12 * CHUNK))).toBe(true);
    await narrowed?.complete();
    await capture.stop();
  });

  it('adds the chunks a tracking capture saw written since the pre-hash, and keeps its instant', async () => {
    dir = await mkdtemp(join(tmpdir(), 'rag-prehash-'));
    const path = join(dir, 'disk0.raw');
    const image = randomBytes(SIZE);
    await writeFile(path, image);
    const scan = new ScanCapture({ disks: [{ name: 'disk0', path }] });
    await scan.start();
    const first = await scan.cut({ chunkSize: CHUNK, everyChunk: true });
    const prehash = await prehashCut(first, { replicationId: 'r1', chunkSize: CHUNK, naming: 'sha256' });
    await first.complete();
    const seed: (string | null)[] = hashesOf(image);
    seed[5] = null; // the seed holds zeros there: chunk 5 differs

    // Written after the pre-hash; a capture that tracks writes (cdp) lists that chunk in its next cut.
    const file = await open(path, 'r+');
    await file.write(randomBytes(100), 0, 100, 9 * CHUNK + 7);
    await file.close();
    const all = await scan.cut({ chunkSize: CHUNK, everyChunk: false });
    const tracked: Cut = { ...all, capturedAt: new Date(Date.now() + 1000), disks: [{ ...(all.disks[0] as Cut['disks'][number]), chunkIndexes: [9] }] };
    const narrowed = narrowedCut(tracked, prehash, { disk0: ChunkHashes.fromList(seed) });
    expect(narrowed?.disks[0]?.chunkIndexes).toEqual([5, 9]);
    expect(narrowed?.capturedAt).toBe(tracked.capturedAt);
    // A disk the seed does not know (or of another size) cannot be narrowed: every chunk is compared instead.
    expect(narrowedCut(tracked, prehash, {})).toBeUndefined();
    await all.abandon();
    await scan.stop();
  });
});
