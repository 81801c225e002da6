/**
 * The agent's NBD export as a process of its own, for benchmarks (like nbdkit is one): cdp capture on IMAGE served
 * at SOCKET, change tracking always on. With CUT_SECONDS > 0 it also cuts every CUT_SECONDS and reads and hashes the
 * frozen chunks, the work shipping does at the source (no network), so copy-on-write and cuts run during the load.
 *
 * Usage: node --import tsx bench/agent/serve-export.ts IMAGE SOCKET STATE_DIR CUT_SECONDS
 * Prints "ready" when serving; on SIGTERM prints one JSON line { cuts, chunksRead, peakRssBytes } and exits.
 */
import { readFileSync } from 'node:fs';
import { CdpCapture } from '../../src/agent/capture/cdp-capture.js';
import { chunkHash } from '../../src/store/chunks.js';

const [image, socketPath, stateDir, cutSeconds] = process.argv.slice(2);
if (!image || !socketPath || !stateDir) throw new Error('usage: serve-export.ts IMAGE SOCKET STATE_DIR CUT_SECONDS');
const capture = new CdpCapture({ disks: [{ name: 'disk0', path: image, socketPath }], stateDir });
await capture.start();
let cuts = 0;
let chunksRead = 0;
let cutting = false;
const every = Number(cutSeconds ?? 0);
const timer = every > 0
  ? setInterval(() => {
      if (cutting) return;
      cutting = true;
      void (async () => {
        const cut = await capture.cut({ chunkSize: 1024 * 1024, everyChunk: false });
        for (const d of cut.disks) {
          for (const i of d.chunkIndexes) {
            chunkHash(await d.read(i));
            chunksRead++;
            await new Promise((r) => setImmediate(r)); // let the VM's requests in between chunks, as uploads would
          }
        }
        await cut.complete();
        cuts++;
        cutting = false;
      })();
    }, every * 1000)
  : undefined;
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  clearInterval(timer);
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  void capture.stop().then(() => {
    process.stdout.write(`${JSON.stringify({ cuts, chunksRead, peakRssBytes: Number(hwm?.[1] ?? 0) * 1024 })}\n`);
    process.exit(0);
  });
});
