import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScanCapture } from '../../src/agent/capture/scan-capture.js';
import type { FreezeHook } from '../../src/agent/freeze.js';
import { BtrfsSnapshotHook, FsFreezeHook } from '../../src/agent/hooks/snapshot-hooks.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/store/chunks.js';
import { waitFor } from '../helpers/agent/agent-fixture.js';

const run = promisify(execFile);
const BLOCKS = 256;
const BLOCK = 4096;

/**
 * A writer process that rewrites a file of BLOCKS blocks over and over, in order: pass n writes "PASS n" into block
 * 0, then block 1, ... So at any one instant the file holds pass n in its first blocks and n - 1 in the rest: the
 * passes never increase along the file and differ by at most one. A scan that reads the file (or the device under
 * it) over a while, with the writer going, breaks that (checked: both tests fail without their hook); a scan of
 * one instant keeps it.
 */
const WRITER = `
const fs = require('node:fs');
const [path, blocks] = [process.argv[1], Number(process.argv[2])];
const fd = fs.openSync(path, 'w');
const b = Buffer.alloc(${BLOCK});
for (let n = 1; ; n++) {
  b.fill(0);
  b.write('PASS ' + String(n).padStart(10, '0') + '\\n');
  for (let i = 0; i < blocks; i++) fs.writeSync(fd, b, 0, b.length, i * ${BLOCK});
  fs.fdatasyncSync(fd); // on the device too, so a scan of the device under the filesystem sees each pass
}`;

function passes(file: Buffer): number[] {
  return Array.from({ length: BLOCKS }, (_, i) => Number(/^PASS (\d{10})/.exec(file.subarray(i * BLOCK, i * BLOCK + 16).toString())?.[1] ?? -1));
}
/** One instant of the writer: passes never increase along the file, and the first and last differ by at most one. */
function isOneInstant(p: number[]): boolean {
  return (p[0] ?? 0) > 1 && p.every((x, i) => i === 0 || x <= (p[i - 1] as number)) && (p[0] as number) - (p.at(-1) as number) <= 1;
}

/**
 * Reads every chunk of one scan cut of `path`, as the agent's shipping would, pausing between chunks as a busy
 * link does: without a hook holding the instant, the writer's passes move on between the reads of one scan.
 */
async function scanOnce(path: string, freeze: FreezeHook): Promise<Buffer> {
  const capture = new ScanCapture({ disks: [{ name: 'disk0', path }], freeze });
  await capture.start();
  const cut = await capture.cut({ chunkSize: DEFAULT_CHUNK_SIZE, everyChunk: true });
  const disk = cut.disks[0];
  if (!disk) throw new Error('no disk in the cut');
  const chunks: Buffer[] = [];
  // Last chunk first (a cut may be read in any order): the device's readahead cannot make the reads one instant.
  for (const i of [...disk.chunkIndexes].reverse()) {
    chunks[i] = await disk.read(i);
    await new Promise((r) => setTimeout(r, 25));
  }
  await cut.complete();
  await capture.stop();
  return Buffer.concat(chunks);
}

/**
 * scan capture with snapshot hooks on real block devices and filesystems (loop devices; root): fsfreeze of an ext4
 * on a loop device whose device is scanned, and a btrfs snapshot of the subvolume holding a disk image. Each scan
 * reads while a writer keeps rewriting a file; what is read is one instant of it, and the filesystem read from the
 * device is clean. (LVM snapshots need the kernel's device-mapper, which these machines do not offer.)
 */
describe('scan snapshot hooks on loop devices', () => {
  let dir: string;
  const loops: string[] = [];
  const mounts: string[] = [];
  const writers: ChildProcess[] = [];

  const startWriter = (path: string) => {
    const w = spawn(process.execPath, ['-e', WRITER, path, String(BLOCKS)], { stdio: 'ignore' });
    writers.push(w);
    return w;
  };
  const mountLoop = async (image: string, mountpoint: string) => {
    const loop = (await run('losetup', ['-f', '--show', image])).stdout.trim();
    loops.push(loop);
    await mkdir(mountpoint, { recursive: true });
    return loop;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rscansnap-'));
  });
  afterAll(async () => {
    for (const w of writers) {
      const exited = w.exitCode === null && w.signalCode === null ? new Promise((r) => w.once('exit', r)) : undefined;
      w.kill('SIGKILL');
      await exited; // its open file would keep the filesystem busy
    }
    for (const m of mounts.reverse()) {
      await run('fsfreeze', ['--unfreeze', m]).catch(() => undefined);
      await run('umount', [m]).catch(() => undefined);
    }
    for (const l of loops) await run('losetup', ['-d', l]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('fsfreeze: a scan of the loop device under a mounted ext4 is one instant of its files and a clean filesystem', async () => {
    const image = join(dir, 'ext4.img');
    const mnt = join(dir, 'ext4');
    await writeFile(image, '');
    await truncate(image, 32 * 1024 * 1024);
    await run('mkfs.ext4', ['-q', '-F', image]);
    const loop = await mountLoop(image, mnt);
    await run('mount', [loop, mnt]);
    mounts.push(mnt);
    const file = join(mnt, 'seq.bin');
    startWriter(file);
    await waitFor(async () => (await readdir(mnt)).includes('seq.bin'), 10_000, 'the writer starting');
    await new Promise((r) => setTimeout(r, 500)); // several passes

    for (let scan = 0; scan < 2; scan++) {
      const read = await scanOnce(loop, new FsFreezeHook(mnt));
      const copy = join(dir, `scan-${scan}.img`);
      await writeFile(copy, read);
      await run('e2fsck', ['-f', '-n', copy]); // exit 0: clean
      const content = (await run('debugfs', ['-R', 'cat /seq.bin', copy], { encoding: 'buffer', maxBuffer: 8 * 1024 * 1024 })).stdout;
      const p = passes(content);
      expect({ scan, first: p[0], last: p.at(-1), oneInstant: isOneInstant(p) }).toEqual({ scan, first: p[0], last: p.at(-1), oneInstant: true });
    }
    // Thawed: the writer goes on.
    const before = passes((await run('cat', [file], { encoding: 'buffer', maxBuffer: 8 * 1024 * 1024 })).stdout)[0] as number;
    await waitFor(async () => (passes((await run('cat', [file], { encoding: 'buffer', maxBuffer: 8 * 1024 * 1024 })).stdout)[0] as number) > before, 10_000, 'the writer writing after the thaw');
  });

  it('btrfs: a scan of a disk image reads a read-only snapshot of its subvolume, removed afterwards', async () => {
    const image = join(dir, 'btrfs.img');
    const mnt = join(dir, 'btrfs');
    await writeFile(image, '');
    await truncate(image, 160 * 1024 * 1024);
    await run('mkfs.btrfs', ['-q', image]);
    const loop = await mountLoop(image, mnt);
    await run('mount', [loop, mnt]);
    mounts.push(mnt);
    const subvolume = join(mnt, 'images');
    await run('btrfs', ['subvolume', 'create', subvolume]);
    const disk = join(subvolume, 'disk0.raw');
    startWriter(disk);
    await waitFor(async () => (await readdir(subvolume)).includes('disk0.raw'), 10_000, 'the writer starting');
    await new Promise((r) => setTimeout(r, 500));

    for (let scan = 0; scan < 2; scan++) {
      const p = passes(await scanOnce(disk, new BtrfsSnapshotHook(subvolume)));
      expect({ scan, first: p[0], last: p.at(-1), oneInstant: isOneInstant(p) }).toEqual({ scan, first: p[0], last: p.at(-1), oneInstant: true });
    }
    expect((await readdir(subvolume)).filter((n) => n.startsWith('.refuge-snap'))).toEqual([]);
  });
});
