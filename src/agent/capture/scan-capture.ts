import { execFile } from 'node:child_process';
import { open, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { RefugeError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import type { FreezeHook } from '../freeze.js';
import { diskSize } from '../disk-size.js';
import { chunkExtents } from './extents.js';
import type { CaptureMode, Cut, CutOptions } from './capture-mode.js';

async function dropDeviceCache(path: string): Promise<void> {
  await promisify(execFile)('blockdev', ['--flushbufs', path]).catch((err: unknown) => {
    throw new RefugeError('failed_precondition', `cannot drop the cache of ${path} before scanning it: ${(err as Error).message}`);
  });
}

/**
 * scan capture (capture-mode.ts): for disk images and block devices the agent cannot sit in front of. A cut lists
 * every chunk (the agent's hash comparison finds the changed ones, so only those ship); the holes of a sparse image
 * are listed as zero chunks without being read (extents.ts). An optional freeze hook
 * (QMP pause, fsfreeze, an LVM or btrfs snapshot: hooks/snapshot-hooks.ts) holds the disks still from the cut until the last chunk is read,
 * which makes the cut one instant; without a hook a cut of a disk in use is only as consistent as its writes allow.
 */
export class ScanCapture implements CaptureMode {
  readonly kind = 'scan';
  private open = false;

  constructor(
    private readonly o: { disks: { name: string; path: string }[]; freeze?: FreezeHook; log?: Logger },
  ) {}

  async start(): Promise<void> {
    this.open = true;
  }

  async cut(options: CutOptions): Promise<Cut> {
    if (!this.open) throw new RefugeError('failed_precondition', 'scan capture is not started');
    const log = this.o.log ?? silentLogger;
    const handles: FileHandle[] = [];
    let frozen = false;
    const thaw = async () => {
      if (!frozen) return;
      frozen = false;
      await this.o.freeze?.thaw();
    };
    try {
      await this.o.freeze?.freeze();
      frozen = this.o.freeze !== undefined;
      const capturedAt = new Date();
      let unread = 0;
      const disks = [];
      for (const d of this.o.disks) {
        const path = this.o.freeze?.readPath?.(d.path) ?? d.path;
        const file = await open(path, 'r');
        handles.push(file);
        // A block device's own page cache may hold blocks a filesystem on it has since rewritten (its writes bypass
        // that cache): drop it, so the scan reads what the device holds now.
        if ((await file.stat()).isBlockDevice()) await dropDeviceCache(path);
        const sizeBytes = await diskSize(path);
        const count = Math.ceil(sizeBytes / options.chunkSize);
        // A sparse image's holes are listed as zero chunks, not read (the freeze, if any, holds them still too).
        const extents = await chunkExtents(path, sizeBytes, options.chunkSize, log);
        const chunkIndexes = extents?.dataChunks ?? Array.from({ length: count }, (_, i) => i);
        unread += chunkIndexes.length;
        // One byte per chunk (1 MiB for 256 GiB at 256 KiB chunks): 1 read, 2 a hole (never read).
        const seen = new Uint8Array(count);
        for (const [first, n] of extents?.zeroRuns ?? []) seen.fill(2, first, first + n);
        const readRun = async (first: number, count: number, into: Uint8Array): Promise<void> => {
          const length = Math.min((first + count) * options.chunkSize, sizeBytes) - first * options.chunkSize;
          if (count < 1 || first < 0 || length !== into.length) throw new RefugeError('internal', `disk ${d.name}: chunks ${first}+${count} are not ${into.length} bytes`);
          for (let index = first; index < first + count; index++) {
            if (seen[index] !== 0) throw new RefugeError('internal', `chunk ${index} of disk ${d.name} ${seen[index] === 1 ? 'read twice in one cut' : 'is a listed hole'}`);
            seen[index] = 1;
          }
          for (let got = 0; got < length; ) {
            const { bytesRead } = await file.read(into, got, length - got, first * options.chunkSize + got);
            if (bytesRead === 0) throw new RefugeError('failed_precondition', `short read of ${d.path} at byte ${first * options.chunkSize + got} (did the disk shrink?)`);
            got += bytesRead;
          }
          unread -= count;
          if (unread === 0) await thaw(); // everything is read: the VM may run again while shipping finishes
        };
        disks.push({
          name: d.name,
          sizeBytes,
          chunkIndexes,
          ...(extents ? { zeroChunks: extents.zeroRuns } : {}),
          read: async (index: number) => {
            const length = Math.min(options.chunkSize, sizeBytes - index * options.chunkSize);
            const data = Buffer.allocUnsafe(length);
            await readRun(index, 1, data);
            return data;
          },
          readRun,
        });
      }
      const finish = async () => {
        await thaw();
        await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
      };
      return { capturedAt, disks, complete: finish, abandon: finish };
    } catch (err) {
      await thaw().catch((e: unknown) => log.warn({ err: e }, 'thaw failed'));
      await Promise.all(handles.map((h) => h.close().catch(() => undefined)));
      throw err;
    }
  }

  pendingBytes(): number {
    return 0;
  }

  async stop(): Promise<void> {
    this.open = false;
  }
}
