import type { BlockDevice, FileBlockDevice } from '../../nbd/block-device.js';
import type { ChangeTracker } from './change-tracker.js';

/**
 * The disk as the VM sees it through the agent's NBD export: a file device whose every write is first shown to the
 * change tracker (which marks it dirty and, during a cut, preserves the bytes it overwrites) before the file
 * device applies it. The tracker sees writes synchronously, in arrival order; a large write is then applied on
 * the thread pool, so a cut first holds new writes and waits for those in flight (`quiesce`): a cut must see each
 * write wholly or not at all.
 */
export class TrackedDevice implements BlockDevice {
  private readonly readLive: (target: Buffer, offset: number) => void;
  /** Set while writes are held (a consistency-group barrier, a cut): writes wait on it, in arrival order. */
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  /** Holds not yet released: holds nest (a group's barrier, then the cut inside it), the last release opens. */
  private holds = 0;

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
    if (this.holds++ === 0) this.gate = new Promise<void>((open) => (this.openGate = open));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.holds > 0) return;
      const open = this.openGate;
      this.gate = undefined;
      this.openGate = undefined;
      open?.();
    };
  }

  /**
   * Holds writes (as `hold`) and resolves once every write already started is applied: from then until the
   * release, the disk is a stable image of every write started before the call. Lasts as long as the writes in
   * flight (at most the NBD connection's limit of them), milliseconds.
   */
  async quiesce(): Promise<() => void> {
    const release = this.hold();
    await this.inner.settled(); // never rejects: a failed write is its own request's error
    return release;
  }

  write(data: readonly Buffer[], offset: number, fua: boolean): void | Promise<void> {
    if (this.gate) return this.gate.then(() => this.write(data, offset, fua));
    this.tracker.beforeWrite(offset, data.reduce((n, d) => n + d.length, 0), this.readLive);
    return this.inner.write(data, offset, fua);
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

  /** As readLiveBytes, off the event loop (FileBlockDevice.readAsync). */
  readLiveBytesAsync(target: Buffer, offset: number): Promise<void> {
    return this.inner.readAsync(target, offset);
  }
}
