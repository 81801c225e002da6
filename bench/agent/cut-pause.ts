import { join } from 'node:path';
import { ChangeTracker } from '../../src/agent/cdp/change-tracker.js';
import { CowStore } from '../../src/agent/cdp/cow-store.js';
import { median } from './measure.js';
import { randomWrites } from './standard-image.js';

const TiB = 1024 ** 4;

/**
 * The only moment the cdp write path waits on a cut: the synchronous swap of bitmaps and the listing of frozen
 * chunks, between two requests of the event loop. Measured on a 1 TiB disk (the scale of P11) after `writes`
 * scattered 4 KiB writes, median of `rounds` cuts.
 */
export function measureCutPause(dir: string, writes: number, rounds: number): { milliseconds: number; chunks: number } {
  const cow = new CowStore(join(dir, 'cut-pause.cow'));
  try {
    const tracker = new ChangeTracker(TiB, cow, undefined);
    const times: number[] = [];
    let chunks = 0;
    for (let round = 0; round < rounds; round++) {
      for (const [offset] of randomWrites(TiB, 4096, writes, 7 + round)) tracker.beforeWrite(offset, 4096, () => undefined);
      const started = performance.now();
      const cut = tracker.cut(1024 * 1024);
      times.push(performance.now() - started);
      chunks = cut.chunkIndexes.length;
      tracker.abandon(cut); // keep the marks: the next round cuts a bigger set
    }
    return { milliseconds: median(times), chunks };
  } finally {
    cow.close();
  }
}
