import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CaptureMode, Cut } from '../../../src/agent/capture/capture-mode.js';
import { chunksOfRuns } from '../../../src/agent/capture/extents.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const CHUNK = 256 * KiB;
export const DISK_SIZES = { disk0: 4 * MiB, disk1: 2 * MiB + 12 * KiB } as const; // disk1 ends in a short chunk
export type DiskName = keyof typeof DISK_SIZES;

/** What a capture mode's test harness provides: the mode, and writes made the way its VM would make them. */
export interface CaptureHarness {
  mode: CaptureMode;
  /**
   * Writes as the machine would. For cdp through the NBD export; for scan to the image, held back while the freeze
   * hook holds the machine (so the returned promise may settle only after a cut has been read).
   */
  write(disk: DiskName, offset: number, data: Buffer): Promise<void>;
  /** Stops the mode cleanly and starts a new instance on the same state (an agent restart). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export type HarnessFactory = (o: { dir: string; images: Record<DiskName, string> }) => Promise<CaptureHarness>;

/**
 * The contract of capture-mode.ts, run against every capture mode with the same test bodies: one instant across
 * disks, completeness against the last completed cut, abandon, everyChunk, changed runs, a clean restart. Every
 * assertion compares bytes read through a cut with bytes the test knows the disks held at the cut.
 */
export function describeCaptureContract(name: string, factory: HarnessFactory): void {
  describe(`capture mode contract: ${name}`, () => {
    let dir: string;
    let images: Record<DiskName, string>;
    let h: CaptureHarness;

    const disk = async (d: DiskName) => readFile(images[d]);
    const chunkOf = (content: Buffer, i: number) => content.subarray(i * CHUNK, (i + 1) * CHUNK);
    /** Reads every chunk a cut lists and returns them by disk and index. */
    const readAll = async (cut: Cut) => {
      const out: Record<string, Map<number, Buffer>> = {};
      for (const d of cut.disks) {
        out[d.name] = new Map();
        for (const i of d.chunkIndexes) out[d.name]?.set(i, await d.read(i));
        // Chunks known zero (holes of the image) are listed without being read.
        for (const i of chunksOfRuns(d.zeroChunks ?? [])) out[d.name]?.set(i, Buffer.alloc(Math.min(CHUNK, d.sizeBytes - i * CHUNK)));
      }
      return out;
    };
    const listed = (cut: Cut, d: DiskName) => {
      const x = cut.disks.find((y) => y.name === d);
      return x ? [...x.chunkIndexes, ...chunksOfRuns(x.zeroChunks ?? [])].sort((a, b) => a - b) : [];
    };
    const firstCut = async () => {
      const c = await h.mode.cut({ chunkSize: CHUNK, everyChunk: true });
      await readAll(c);
      await c.complete();
    };

    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'rcap-'));
      images = { disk0: join(dir, 'disk0.raw'), disk1: join(dir, 'disk1.raw') };
      for (const d of Object.keys(DISK_SIZES) as DiskName[]) {
        await writeFile(images[d], randomBytes(DISK_SIZES[d]));
      }
      h = await factory({ dir, images });
      await h.mode.start();
    });
    afterEach(async () => {
      await h.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('lists every chunk of every disk on the first cut, with the bytes of the disks', async () => {
      const cut = await h.mode.cut({ chunkSize: CHUNK, everyChunk: false });
      expect(cut.disks.map((d) => [d.name, d.sizeBytes])).toEqual([['disk0', DISK_SIZES.disk0], ['disk1', DISK_SIZES.disk1]]);
      const chunks = await readAll(cut);
      for (const d of ['disk0', 'disk1'] as DiskName[]) {
        const content = await disk(d);
        expect(listed(cut, d)).toEqual(Array.from({ length: Math.ceil(DISK_SIZES[d] / CHUNK) }, (_, i) => i));
        expect(Buffer.concat([...(chunks[d]?.values() ?? [])]).equals(content)).toBe(true);
      }
      await cut.complete();
    });

    it('reads one instant across disks however the disks are written while the cut is read', async () => {
      await firstCut();
      await h.write('disk0', 5, Buffer.from('before the cut'));
      await h.write('disk1', 2 * MiB + 100, Buffer.from('tail before the cut'));
      const atCut = { disk0: await disk('disk0'), disk1: await disk('disk1') };
      const cut = await h.mode.cut({ chunkSize: CHUNK, everyChunk: false });
      // Overwrite both disks, including the chunks the cut lists and has not read yet; one chunk gets written twice.
      const writes = Promise.all([
        h.write('disk0', 0, randomBytes(CHUNK + 4 * KiB)),
        h.write('disk0', 3, randomBytes(100)),
        h.write('disk1', 2 * MiB, randomBytes(12 * KiB)),
        h.write('disk0', 3 * MiB, randomBytes(64 * KiB)),
      ]);
      if (name === 'cdp') await writes; // cdp never holds the VM; scan's freeze hook holds the writes until the cut is read
      const chunks = await readAll(cut);
      for (const d of ['disk0', 'disk1'] as DiskName[]) {
        for (const [i, bytes] of chunks[d] ?? []) expect([d, i, bytes.equals(chunkOf(atCut[d], i))]).toEqual([d, i, true]);
      }
      expect(listed(cut, 'disk0')).toContain(0);
      expect(listed(cut, 'disk1')).toContain(8);
      await cut.complete();
      await writes;
    });

    it('lists at least every chunk written since the last completed cut, and again after an abandoned cut', async () => {
      await firstCut();
      await h.write('disk0', 2 * CHUNK + 10, Buffer.from('x'));
      await h.write('disk1', 3 * CHUNK - 1, Buffer.from('spans two chunks'));
      const abandoned = await h.mode.cut({ chunkSize: CHUNK, everyChunk: false });
      await readAll(abandoned);
      await abandoned.abandon();
      await h.write('disk0', 7 * CHUNK, Buffer.from('after the abandoned cut'));
      const content = { disk0: await disk('disk0'), disk1: await disk('disk1') };
      const cut = await h.mode.cut({ chunkSize: CHUNK, everyChunk: false });
      expect(listed(cut, 'disk0')).toEqual(expect.arrayContaining([2, 7]));
      expect(listed(cut, 'disk1')).toEqual(expect.arrayContaining([2, 3]));
      const chunks = await readAll(cut);
      for (const d of ['disk0', 'disk1'] as DiskName[]) {
        for (const [i, bytes] of chunks[d] ?? []) expect(bytes.equals(chunkOf(content[d], i))).toBe(true);
      }
      await cut.complete();
    });

    it('lists every chunk when asked to (everyChunk)', async () => {
      await firstCut();
      const cut = await h.mode.cut({ chunkSize: CHUNK, everyChunk: true });
      expect(listed(cut, 'disk0').length).toBe(DISK_SIZES.disk0 / CHUNK);
      expect(listed(cut, 'disk1').length).toBe(Math.ceil(DISK_SIZES.disk1 / CHUNK));
      await cut.complete();
    });

    it('names in changedRuns (when offered) every byte that differs from the last completed cut', async () => {
      await firstCut();
      const before = await disk('disk0');
      await h.write('disk0', CHUNK + 5000, randomBytes(3000));
      await h.write('disk0', CHUNK + 100_000, randomBytes(10));
      const cut = await h.mode.cut({ chunkSize: CHUNK, everyChunk: false });
      const d0 = cut.disks.find((d) => d.name === 'disk0');
      const after = await d0?.read(1);
      if (d0?.changedRuns) {
        const runs = d0.changedRuns(1);
        const old = chunkOf(before, 1);
        for (let b = 0; b < CHUNK; b++) {
          if (old[b] === after?.[b]) continue;
          expect(runs.some(([o, l]) => b >= o && b < o + l)).toBe(true);
        }
        expect(runs.reduce((n, [, l]) => n + l, 0)).toBeLessThanOrEqual(3 * 4 * KiB); // block-granular, not the chunk
      }
      await cut.complete();
    });

    it('refuses to read a chunk twice in one cut', async () => {
      const cut = await h.mode.cut({ chunkSize: CHUNK, everyChunk: true });
      const d0 = cut.disks[0];
      await d0?.read(0);
      await expect(d0?.read(0)).rejects.toThrow(/twice|not an unread chunk/);
      await cut.abandon();
    });

    it('after a clean restart lists what was written before it and not completed', async () => {
      await firstCut();
      await h.write('disk1', 5 * CHUNK + 1, Buffer.from('written before the restart'));
      await h.restart();
      const content = await disk('disk1');
      const cut = await h.mode.cut({ chunkSize: CHUNK, everyChunk: false });
      expect(listed(cut, 'disk1')).toContain(5);
      const chunks = await readAll(cut);
      expect(chunks.disk1?.get(5)?.equals(chunkOf(content, 5))).toBe(true);
      await cut.complete();
    });
  });
}

/** A zero-filled image of `size` bytes (sparse). */
export async function sparseImage(path: string, size: number): Promise<void> {
  await writeFile(path, '');
  await truncate(path, size);
}
