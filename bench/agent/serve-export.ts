/**
 * The agent's NBD export as a process of its own, for benchmarks (like nbdkit is one): cdp capture on IMAGE served
 * at SOCKET, change tracking always on. With CUT_SECONDS > 0 it also cuts every CUT_SECONDS and reads and hashes the
 * frozen chunks as shipping does at the source (ship-cut.ts `hashedGroups`: runs of chunks read on libuv's pool,
 * hashed in a worker thread, at the default chunk size and the naming of store format 4), without the network, so
 * copy-on-write and cuts run during the load.
 *
 * Usage: node --import tsx bench/agent/serve-export.ts IMAGE SOCKET STATE_DIR CUT_SECONDS
 * Prints "ready" when serving; on SIGTERM prints one JSON line { cuts, chunksRead, peakRssBytes } and exits.
 */
import { readFileSync } from 'node:fs';
import { CdpCapture } from '../../src/agent/capture/cdp-capture.js';
import { hashedGroups } from '../../src/agent/shipping/ship-cut.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/store/chunks.js';

const [image, socketPath, stateDir, cutSeconds] = process.argv.slice(2);
if (!image || !socketPath || !stateDir) throw new Error('usage: serve-export.ts IMAGE SOCKET STATE_DIR CUT_SECONDS');
const capture = new CdpCapture({ disks: [{ name: 'disk0', path: image, socketPath }], stateDir });
await capture.start();
let cuts = 0;
let chunksRead = 0;
/** The cut being read, if any; stopping waits for it (the disk must stay open under its reads). */
let cutting: Promise<void> | undefined;
const stopping = new AbortController();
const every = Number(cutSeconds ?? 0);
const timer = every > 0
  ? setInterval(() => {
      cutting ??= (async () => {
        const cut = await capture.cut({ chunkSize: DEFAULT_CHUNK_SIZE, everyChunk: false });
        for (const d of cut.disks) {
          for await (const group of hashedGroups(d, DEFAULT_CHUNK_SIZE, 'leaf16', stopping.signal)) chunksRead += group.length;
        }
        await cut.complete();
        cuts++;
      })().catch((err: unknown) => {
        if (!stopping.signal.aborted) throw err;
      }).finally(() => (cutting = undefined));
    }, every * 1000)
  : undefined;
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  clearInterval(timer);
  stopping.abort();
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  void Promise.resolve(cutting).then(() => capture.stop()).then(() => {
    process.stdout.write(`${JSON.stringify({ cuts, chunksRead, peakRssBytes: Number(hwm?.[1] ?? 0) * 1024 })}\n`);
    process.exit(0);
  });
});
