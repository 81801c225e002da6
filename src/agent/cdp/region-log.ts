import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

/**
 * A write-intent log: one bit per 1 MiB region of a disk, written to the log file *before* the first write to the
 * region since the last completed cut is applied (like md's write-intent bitmap). If the agent is killed, the log
 * names every region that may differ from the last recovery point, so the restarted agent compares only those
 * regions by hash instead of reading the whole disk. A bit costs one 1-byte positioned write the first time its
 * region is written per cut. The log is never fsynced (an fsync per newly written region would cost the VM most of
 * its write IOPS): it lives in the page cache, which survives the agent but not the host, so the agent trusts it
 * only within the same boot of the host (see cdp-state.ts) and falls back to comparing every chunk otherwise.
 */
export class RegionLog {
  private readonly fd: number;
  private readonly bits: Uint8Array;

  private constructor(fd: number, bits: Uint8Array) {
    this.fd = fd;
    this.bits = bits;
  }

  /** Opens (creating) the log for a disk of `regionCount` regions; `existing` says whether it was there already. */
  static open(path: string, regionCount: number): { log: RegionLog; existing: boolean } {
    const fd = openSync(path, 'a+');
    closeSync(fd);
    const rw = openSync(path, 'r+', 0o600);
    const bytes = Math.ceil(regionCount / 8);
    const size = fstatSync(rw).size;
    const bits = new Uint8Array(bytes);
    const existing = size === bytes;
    if (existing) readSync(rw, bits, 0, bytes, 0);
    else writeSync(rw, bits, 0, bytes, 0);
    return { log: new RegionLog(rw, bits), existing };
  }

  regions(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.bits.length * 8; i++) if (((this.bits[i >> 3] as number) & (1 << (i & 7))) !== 0) out.push(i);
    return out;
  }

  /** Records that `region` is about to be written. */
  mark(region: number): void {
    const byte = region >> 3;
    const before = this.bits[byte] as number;
    const after = before | (1 << (region & 7));
    if (after === before) return;
    this.bits[byte] = after;
    writeSync(this.fd, this.bits, byte, 1, byte);
  }

  /** Replaces the marks with exactly `regions` (after a cut is committed: what is still unshipped). */
  reset(regions: Iterable<number>): void {
    this.bits.fill(0);
    for (const r of regions) this.bits[r >> 3] = (this.bits[r >> 3] as number) | (1 << (r & 7));
    writeSync(this.fd, this.bits, 0, this.bits.length, 0);
  }

  close(): void {
    closeSync(this.fd);
  }
}
