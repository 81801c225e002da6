import { open } from 'node:fs/promises';
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
