import { mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { RefugeError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { FileBlockDevice } from '../../nbd/block-device.js';
import { NbdServer } from '../../nbd/server.js';
import { ChangeTracker, type FrozenCut } from '../cdp/change-tracker.js';
import { CowStore } from '../cdp/cow-store.js';
import { currentBootId, initialMarks, loadCdpState, saveCdpState, type CdpState, type TrackingOrigin } from '../cdp/cdp-state.js';
import { RegionLog } from '../cdp/region-log.js';
import { TrackedDevice } from '../cdp/tracked-device.js';
import type { CaptureMode, Cut, CutOptions } from './capture-mode.js';
import { chunkExtents } from './extents.js';

/** Cuts covering less than this are read as they are: mapping the image (a qemu-img run) would cost more. */
const EXTENT_MAP_MIN_BYTES = 1024 * 1024 * 1024;

export interface CdpDiskOptions {
  name: string;
  /** The raw disk image the VM's disk lives in. */
  path: string;
  /** Where this disk's NBD export listens; the VM attaches with `-drive file=nbd:unix:PATH,format=raw`. */
  socketPath: string;
}

interface CdpDisk {
  o: CdpDiskOptions;
  file: FileBlockDevice;
  device: TrackedDevice;
  tracker: ChangeTracker;
  cow: CowStore;
  regionLog: RegionLog;
  server: NbdServer;
  origin: TrackingOrigin;
}

/**
 * cdp capture (capture-mode.ts): the agent serves each disk image over its own NBD socket and the VM uses the disk
 * through it, so every write passes the change tracker. A cut is instantaneous for all disks at once (a
 * synchronous swap of bitmaps in one turn of the event loop); a cut lists only the chunks written since the
 * previous cut, with the runs written, so shipping neither re-reads the disk nor sends unwritten bytes.
 */
export class CdpCapture implements CaptureMode {
  readonly kind = 'cdp';
  private disks: CdpDisk[] = [];
  private bootId = 'unknown';
  private readonly log: Logger;

  constructor(
    private readonly o: { disks: CdpDiskOptions[]; stateDir: string; machine?: string; log?: Logger },
  ) {
    this.log = o.log ?? silentLogger;
  }

  private origins: Record<string, TrackingOrigin> = {};

  /** Where each disk's tracking started from in this run (clean stop, intent log, or lost); kept after `stop`. */
  get trackingOrigins(): Record<string, TrackingOrigin> {
    return { ...this.origins };
  }

  async start(): Promise<void> {
    await mkdir(this.o.stateDir, { recursive: true });
    const saved = await loadCdpState(this.o.stateDir);
    this.bootId = await currentBootId();
    try {
      for (const o of this.o.disks) this.disks.push(await this.openDisk(o, saved));
    } catch (err) {
      await this.closeDisks();
      throw err;
    }
    this.origins = Object.fromEntries(this.disks.map((d) => [d.o.name, d.origin]));
    // From here on a crash must not be mistaken for a clean stop.
    await saveCdpState(this.o.stateDir, { bootId: this.bootId, clean: false, disks: {} });
    this.log.info({ tracking: this.trackingOrigins, sockets: this.o.disks.map((d) => d.socketPath) }, 'cdp capture serving disks over NBD');
  }

  private async openDisk(o: CdpDiskOptions, saved: CdpState | undefined): Promise<CdpDisk> {
    await mkdir(dirname(o.socketPath), { recursive: true });
    const file = FileBlockDevice.open(o.path);
    try {
      return await this.trackDisk(o, saved, file);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  private async trackDisk(o: CdpDiskOptions, saved: CdpState | undefined, file: FileBlockDevice): Promise<CdpDisk> {
    const regionCount = Math.ceil(file.sizeBytes / (1024 * 1024));
    const { log: regionLog, existing } = RegionLog.open(join(this.o.stateDir, `intent-${o.name}.bitmap`), regionCount);
    const { marks, origin } = await initialMarks({
      saved,
      bootId: this.bootId,
      disk: o.name,
      path: o.path,
      sizeBytes: file.sizeBytes,
      logRegions: existing ? regionLog.regions() : undefined,
    });
    regionLog.reset(marks.markedRegions()); // the log must cover whatever is unshipped from now on
    const cow = new CowStore(join(this.o.stateDir, `cow-${o.name}.bin`));
    const tracker = new ChangeTracker(file.sizeBytes, cow, regionLog, marks);
    const device = new TrackedDevice(file, tracker);
    const description = `refuge agent: disk ${o.name}${this.o.machine ? ` of machine ${this.o.machine}` : ''}`;
    const server = await NbdServer.start({ listen: { socketPath: o.socketPath }, exports: [{ name: o.name, description, device }], log: this.log }).catch((err: unknown) => {
      cow.close();
      regionLog.close();
      throw err;
    });
    return { o, file, device, tracker, cow, regionLog, server, origin };
  }

  async cut(options: CutOptions): Promise<Cut> {
    if (this.disks.length === 0) throw new RefugeError('failed_precondition', 'cdp capture is not started');
    if (options.everyChunk) for (const d of this.disks) d.tracker.markAll();
    // Writes held and those in flight applied on every disk, then one synchronous pass over all disks: no write of
    // any disk can land between their cuts, and none is half applied.
    const releases = await Promise.all(this.disks.map((d) => d.device.quiesce()));
    const capturedAt = new Date();
    let frozen: { d: CdpDisk; cut: FrozenCut }[];
    try {
      frozen = this.disks.map((d) => ({ d, cut: d.tracker.cut(options.chunkSize) }));
    } finally {
      for (const release of releases) release();
    }
    // A cut covering much of a disk (a seed, lost tracking) leaves out the image's holes: they are not read. The map
    // is taken after the cut, and a chunk written since then stays listed (ChangeTracker.excludeHoles).
    for (const { d, cut } of frozen) {
      if (!options.everyChunk && cut.marks.markedBytes() < EXTENT_MAP_MIN_BYTES) continue;
      const extents = await chunkExtents(d.o.path, d.file.sizeBytes, options.chunkSize, this.log);
      if (extents) d.tracker.excludeHoles(cut, extents.zeroRuns);
    }
    let finished = false;
    const finish = (how: 'complete' | 'abandon') => {
      if (finished) return;
      finished = true;
      for (const { d, cut } of frozen) d.tracker[how](cut);
    };
    return {
      capturedAt,
      disks: frozen.map(({ d, cut }) => ({
        name: d.o.name,
        sizeBytes: d.file.sizeBytes,
        get chunkIndexes() {
          return cut.chunkIndexes;
        },
        zeroChunks: cut.zeroChunks,
        read: async (index: number) => cut.readChunk(index, (t, at) => d.device.readLiveBytes(t, at)),
        // Consecutive chunks (a seed's data extents) straight into the shipper's group buffer, no buffer per chunk.
        // The live bytes are read on libuv's pool: copying a point's gigabytes on the event loop held up the VM's writes
        // (P5 in docs/benchmarks.md: a third of the agent's main thread under 20 MB/s of random writes).
        readRun: async (first: number, count: number, into: Uint8Array) => {
          const bytes = Buffer.from(into.buffer, into.byteOffset, into.byteLength);
          await cut.readChunks(first, count, bytes, (t, offset) => d.device.readLiveBytesAsync(t, offset));
        },
        changedRuns: (index: number) => cut.changedRuns(index),
        readRanges: (index: number, ranges: readonly (readonly [number, number])[], into: Buffer) => cut.readRanges(index, ranges, into, (t, offset) => d.device.readLiveBytesAsync(t, offset)),
      })),
      complete: async () => finish('complete'),
      abandon: async () => finish('abandon'),
    };
  }

  /**
   * Holds every disk's writes and resolves once those in flight have landed (a consistency group's barrier: the
   * disks are then still, and the cut inside the hold waits for nothing, so the group's pause window bounds it).
   */
  async hold(): Promise<() => void> {
    const releases = await Promise.all(this.disks.map((d) => d.device.quiesce()));
    return () => {
      for (const r of releases) r();
    };
  }

  pendingBytes(): number {
    return this.disks.reduce((n, d) => n + d.tracker.pendingBytes(), 0);
  }

  async stop(): Promise<void> {
    if (this.disks.length === 0) return;
    await Promise.all(this.disks.map((d) => d.server.close()));
    // Writes still arriving (parked behind others, released from a group's hold) are held for good, and those in
    // flight land, before the state is taken: the clean stop's snapshot is the disk's last word.
    await Promise.all(this.disks.map((d) => d.device.quiesce()));
    const state: CdpState = { bootId: this.bootId, clean: true, disks: {} };
    for (const d of this.disks) {
      d.file.flush();
      const uncommitted = d.tracker.uncommitted();
      d.regionLog.reset(uncommitted.markedRegions());
      state.disks[d.o.name] = { sizeBytes: d.file.sizeBytes, mtimeMs: 0, uncommitted: uncommitted.toJSON() };
    }
    await this.closeDisks();
    for (const d of this.o.disks) {
      const entry = state.disks[d.name];
      if (entry) entry.mtimeMs = (await stat(d.path)).mtimeMs; // after the last write, so a later change is noticed
    }
    await saveCdpState(this.o.stateDir, state);
    this.log.info('cdp capture stopped cleanly');
  }

  private async closeDisks(): Promise<void> {
    for (const d of this.disks.splice(0)) {
      await d.server.close().catch(() => undefined);
      d.file.close(); // after any write still in flight (FileBlockDevice.close)
      d.cow.close();
      d.regionLog.close();
    }
  }
}
