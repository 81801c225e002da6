import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RefugeError } from '../core/errors.js';
import { packageRoot } from '../core/package-root.js';
import { run } from '../core/processes.js';
import { sleep } from '../core/durations.js';

/**
 * Refuge's tiny demo and test guest (guest/build.sh, guest/init.sh): Debian's kernel with a busybox initramfs that
 * writes a marker and checksummed data to its first virtio disk on first boot, and reads them back on a recovered
 * copy. It reports on the serial console with the lines below.
 */
export const GUEST_LINES = {
  ready: 'refuge-guest: ready',
  markerWritten: 'refuge-guest: marker written: ',
  markerRead: 'refuge-guest: marker read: ',
  dataVerified: 'refuge-guest: data verified',
  /** With refuge.disk_hash=1: the SHA-256 of the whole disk as the guest found it, before mounting it. */
  diskHash: 'refuge-guest: disk sha256: ',
  error: 'refuge-guest: error: ',
} as const;

/** Kernel command line of the guest (serial console, quiet, power off instead of rebooting on panic). */
export const GUEST_CMDLINE = 'console=ttyS0 quiet panic=-1';

export interface DemoGuest {
  kernel: string;
  initrd: string;
}

/** The built guest, building it first if needed (needs the packages scripts/setup.sh installs). */
export async function ensureDemoGuest(outDir = join(packageRoot(), 'build', 'guest')): Promise<DemoGuest> {
  const guest = { kernel: join(outDir, 'vmlinuz'), initrd: join(outDir, 'initrd.img') };
  if (existsSync(join(outDir, 'guest.json')) && existsSync(guest.kernel) && existsSync(guest.initrd)) return guest;
  const r = await run(join(packageRoot(), 'guest', 'build.sh'), [outDir], { timeoutMs: 600_000 });
  if (r.code !== 0) {
    throw new RefugeError('failed_precondition', `building the demo guest failed: ${(r.stderr || r.stdout).trim()}`, {
      hint: 'run scripts/setup.sh, which installs the Debian packages the guest is built from',
    });
  }
  return guest;
}

/** Waits until the console text (re-read through `read`) matches `pattern`; fails early on a guest error line. */
export async function waitForConsole(read: () => Promise<string>, pattern: RegExp, timeoutMs = 120_000, what = 'the guest'): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await read();
    const m = pattern.exec(text);
    if (m) return m;
    const err = text.split('\n').find((l) => l.includes(GUEST_LINES.error));
    if (err) throw new RefugeError('failed_precondition', `${what} reported: ${err.trim()}`);
    if (Date.now() > deadline) {
      throw new RefugeError('unavailable', `${what} did not print ${pattern} within ${timeoutMs / 1000} s; last output: ${text.slice(-300).trim()}`);
    }
    await sleep(250);
  }
}
