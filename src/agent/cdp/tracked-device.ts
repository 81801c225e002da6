import type { BlockDevice, FileBlockDevice } from '../../nbd/block-device.js';
import type { ChangeTracker } from './change-tracker.js';

/**
 * The disk as the VM sees it through the agent's NBD export: a file device whose every write is first shown to the
 * change tracker (which marks it dirty and, during a cut, preserves the bytes it overwrites). Synchronous
 * throughout, which is what lets a cut happen between two writes without pausing either.
 */
export class TrackedDevice implements BlockDevice {
  private readonly readLive: (target: Buffer, offset: number) => void;
  /** Set while writes are held (a consistency-group barrier): writes wait on it, in arrival order. */
  private gate: Promise<void> | undefined;

  constructor(
    readonly inner: FileBlockDevice,
    readonly tracker: ChangeTracker,
  ) {
    this.readLive = (target, offset) => inner.read(target, offset);
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  read(target: Buffer, offset: number): void {
    this.inner.read(target, offset);
  }

  /**
   * Holds writes until the returned function is called: a write arriving meanwhile is neither applied nor
   * acknowledged (so the guest cannot act on it), and runs, in arrival order, once released. Reads go on.
   */
  hold(): () => void {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    this.gate = gate;
    return () => {
      if (this.gate === gate) this.gate = undefined;
      release();
    };
  }

  write(data: readonly Buffer[], offset: number, fua: boolean): void | Promise<void> {
    if (this.gate) return this.gate.then(() => this.write(data, offset, fua));
    this.tracker.beforeWrite(offset, data.reduce((n, d) => n + d.length, 0), this.readLive);
    this.inner.write(data, offset, fua);
  }

  writeZeroes(offset: number, length: number, fua: boolean): void | Promise<void> {
    if (this.gate) return this.gate.then(() => this.writeZeroes(offset, length, fua));
    this.tracker.beforeWrite(offset, length, this.readLive);
    this.inner.writeZeroes(offset, length, fua);
  }

  trim(): void {
    // Advisory and implemented as "keep the bytes": nothing changes, nothing to track.
  }

  flush(): void {
    this.inner.flush();
  }

  /** Reads live bytes for the shipper (frozen chunks go through the tracker's cut instead). */
  readLiveBytes(target: Buffer, offset: number): void {
    this.inner.read(target, offset);
  }
}
