import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import type { FreezeHook } from '../../../src/agent/freeze.js';
import { describeCaptureContract, type DiskName } from './capture-contract.js';

/** A freeze hook standing in for a paused VM: the test's writes wait while it is frozen. */
class WriteGate implements FreezeHook {
  readonly description = 'test write gate';
  private thawed: Promise<void> = Promise.resolve();
  private release: (() => void) | undefined;

  async freeze(): Promise<void> {
    this.thawed = new Promise((resolve) => (this.release = resolve));
  }

  async thaw(): Promise<void> {
    this.release?.();
  }

  whenThawed(): Promise<void> {
    return this.thawed;
  }
}

describeCaptureContract('scan', async ({ images }) => {
  const gate = new WriteGate();
  const disks = (Object.keys(images) as DiskName[]).map((name) => ({ name, path: images[name] }));
  let mode = new ScanCapture({ disks, freeze: gate });
  return {
    get mode() {
      return mode;
    },
    async write(disk, offset, data) {
      await gate.whenThawed();
      const f = await open(images[disk], 'r+');
      await f.write(data, 0, data.length, offset);
      await f.close();
    },
    async restart() {
      await mode.stop();
      mode = new ScanCapture({ disks, freeze: gate });
      await mode.start();
    },
    async close() {
      await mode.stop();
    },
  };
});

describe('scan capture: readRun', () => {
  it('reads consecutive chunks as read would, the short last chunk included, each at most once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rscan-'));
    try {
      const chunk = 64 * 1024;
      const content = randomBytes(3 * chunk + 1000); // ends in a short chunk
      const path = join(dir, 'disk0.raw');
      await writeFile(path, content);
      const mode = new ScanCapture({ disks: [{ name: 'disk0', path }] });
      await mode.start();
      const cut = await mode.cut({ chunkSize: chunk, everyChunk: true });
      const d = cut.disks[0];
      if (!d?.readRun) throw new Error('scan capture offers readRun');
      const into = Buffer.alloc(content.length - chunk);
      await d.readRun(1, 3, into);
      expect(into.equals(content.subarray(chunk))).toBe(true);
      expect((await d.read(0)).equals(content.subarray(0, chunk))).toBe(true);
      await expect(d.readRun(2, 1, Buffer.alloc(chunk))).rejects.toThrow(/read twice/);
      await expect(d.readRun(0, 2, Buffer.alloc(chunk))).rejects.toThrow(/not 65536 bytes/);
      await cut.complete();
      await mode.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
