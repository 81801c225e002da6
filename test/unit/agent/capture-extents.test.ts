import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CaptureMode } from '../../../src/agent/capture/capture-mode.js';
import { CdpCapture } from '../../../src/agent/capture/cdp-capture.js';
import { chunkExtents, extentsToChunks } from '../../../src/agent/capture/extents.js';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import type { ReplicatorTransport } from '../../../src/agent/clients.js';
import { ChunkUploader } from '../../../src/agent/shipping/chunk-uploader.js';
import { shipCut } from '../../../src/agent/shipping/ship-cut.js';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;
const SIZE = 64 * MiB + 12 * KiB; // ends in a short chunk
/** Data at known offsets of a sparse image: inside one chunk, across a chunk boundary, in the short last chunk. */
const PIECES = [
  { offset: 5 * MiB + 4 * KiB, length: 300 * KiB },
  { offset: 40 * MiB - 8 * KiB, length: 16 * KiB },
  { offset: SIZE - 4 * KiB, length: 4 * KiB },
];

/** The replicator's three calls, answered by a real replica store (what the replicator does, minus HTTP). */
function storeTransport(store: ReplicaStore, replicationId: string): ReplicatorTransport {
  return {
    missing: (hashes) => store.missingChunks(hashes),
    putChunk: async (hash, body) => store.putChunk(hash, Buffer.from(body)),
    commit: async (req) => {
      const m = await store.commitPoint({ replicationId, parentId: req.parentId, capturedAt: new Date(req.capturedAt), consistency: req.consistency, disks: req.disks });
      return { pointId: m.id, capturedAt: m.capturedAt, changedBytes: m.stats.changedBytes };
    },
  };
}

describe('extent map of a sparse image', () => {
  it('turns extents into data chunks and zero runs; anything unmapped counts as data', () => {
    const e = (start: number, length: number, zero: boolean) => ({ start, length, zero });
    expect(extentsToChunks([e(0, 1000, true), e(1000, 10, false), e(1010, 2990, true)], 4000, 500)).toEqual({ dataChunks: [2], zeroRuns: [[0, 2], [3, 5]] });
    expect(extentsToChunks([e(0, 1500, true)], 4000, 500)).toEqual({ dataChunks: [3, 4, 5, 6, 7], zeroRuns: [[0, 3]] });
  });

  let dir: string;
  let image: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rextents-'));
    image = join(dir, 'disk0.raw');
    const f = await open(image, 'w');
    await f.truncate(SIZE);
    for (const p of PIECES) await f.write(randomBytes(p.length), 0, p.length, p.offset);
    await f.close();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('qemu-img map finds the chunks holding the data', async () => {
    const extents = await chunkExtents(image, SIZE, CHUNK);
    expect(extents?.dataChunks).toEqual([20, 21, 159, 160, 256]);
    expect(await chunkExtents('/dev/null', SIZE, CHUNK)).toBeUndefined(); // not a regular file: read everything
  });

  const modes: Record<string, () => CaptureMode> = {
    scan: () => new ScanCapture({ disks: [{ name: 'disk0', path: image }] }),
    cdp: () => new CdpCapture({ disks: [{ name: 'disk0', path: image, socketPath: join(dir, 'disk0.sock') }], stateDir: join(dir, 'state') }),
  };
  for (const [kind, make] of Object.entries(modes)) {
    it(`a ${kind} seed reads the data, not the holes, and the point restores the image byte for byte`, async () => {
      const store = await ReplicaStore.open(await FilesystemBackend.create(join(dir, 'store')), { create: true, chunkSize: CHUNK });
      const mode = make();
      await mode.start();
      try {
        const cut = await mode.cut({ chunkSize: CHUNK, everyChunk: true });
        const transport = storeTransport(store, 'r1');
        const shipped = await shipCut(cut, { chunkSize: CHUNK, naming: store.naming, base: {}, emptyParent: true, uploader: new ChunkUploader(transport, { compress: false }) });
        const point = await transport.commit({ parentId: null, capturedAt: cut.capturedAt.toISOString(), consistency: 'crash', disks: shipped.disks });
        await cut.complete();
        // Five chunks hold data: those are read, not 64 MiB; the holes are not even listed in the commit.
        expect(shipped.readBytes).toBe(4 * CHUNK + 12 * KiB);
        expect(shipped.disks[0]?.changes.map(([i]) => i)).toEqual([20, 21, 159, 160, 256]);
        const restored = await store.readRange(await store.getPoint('r1', point.pointId), 'disk0', 0, SIZE);
        expect(restored.equals(await readFile(image))).toBe(true);
      } finally {
        await mode.stop();
        await store.close();
      }
    });
  }
});
