import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { promisify } from 'node:util';
import { RefugeError } from '../../core/errors.js';
import type { FreezeHook } from '../freeze.js';

const run = promisify(execFile);
const TOOL_TIMEOUT_MS = 60_000;

async function tool(cmd: string, args: string[]): Promise<string> {
  try {
    return (await run(cmd, args, { timeout: TOOL_TIMEOUT_MS })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; code?: string | number; message: string };
    if (e.code === 'ENOENT') throw new RefugeError('failed_precondition', `${cmd} is not installed`, { hint: 'install it (fsfreeze: util-linux, lvm: lvm2, btrfs: btrfs-progs) or choose another --snapshot hook' });
    throw new RefugeError('failed_precondition', `${cmd} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

/**
 * Freezes a mounted filesystem (`fsfreeze -f`): the kernel flushes it and blocks every writer until `fsfreeze -u`,
 * so the block device under it holds one consistent filesystem while the scan reads it. Writers wait for the whole
 * scan (use a snapshot hook to make that wait short).
 */
export class FsFreezeHook implements FreezeHook {
  constructor(private readonly mountpoint: string) {}

  get description(): string {
    return `fsfreeze ${this.mountpoint}`;
  }

  async freeze(): Promise<void> {
    await tool('fsfreeze', ['--freeze', this.mountpoint]);
  }

  async thaw(): Promise<void> {
    await tool('fsfreeze', ['--unfreeze', this.mountpoint]);
  }
}

/**
 * An LVM snapshot of the logical volume (`lvcreate --snapshot`; LVM suspends the volume, and the filesystem on it is
 * frozen, for the instant of its creation): the scan reads the snapshot, so writers are not held for the scan.
 * The snapshot is removed at thaw; `size` is its copy-on-write space (writes to the origin during the scan).
 */
export class LvmSnapshotHook implements FreezeHook {
  private snapshot: string | undefined;

  constructor(
    private readonly volume: string,
    private readonly size = '256M',
  ) {
    if (!/^[A-Za-z0-9+_.-]+\/[A-Za-z0-9+_.-]+$/.test(volume)) throw new RefugeError('invalid_argument', `'${volume}' is not VG/LV`);
  }

  get description(): string {
    return `LVM snapshot of ${this.volume}`;
  }

  async freeze(): Promise<void> {
    const name = `refuge-snap-${randomBytes(4).toString('hex')}`;
    await tool('lvcreate', ['--snapshot', '--name', name, '--size', this.size, this.volume]);
    this.snapshot = `${this.volume.split('/')[0]}/${name}`;
  }

  /** The origin volume's device paths (/dev/VG/LV, /dev/mapper/VG-LV) read from the snapshot instead. */
  readPath(path: string): string {
    if (!this.snapshot) return path;
    const [vg, lv] = this.volume.split('/') as [string, string];
    const mapper = `/dev/mapper/${vg.replace(/-/g, '--')}-${lv.replace(/-/g, '--')}`;
    return path === `/dev/${this.volume}` || path === mapper ? `/dev/${this.snapshot}` : path;
  }

  async thaw(): Promise<void> {
    if (!this.snapshot) return;
    const snap = this.snapshot;
    this.snapshot = undefined;
    await tool('lvremove', ['--force', snap]);
  }
}

/**
 * A read-only btrfs snapshot of the subvolume holding the disk images (`btrfs subvolume snapshot -r`, atomic):
 * images under the subvolume are read from the snapshot; it is deleted at thaw.
 */
export class BtrfsSnapshotHook implements FreezeHook {
  private snapshot: string | undefined;

  constructor(private readonly subvolume: string) {}

  get description(): string {
    return `btrfs snapshot of ${this.subvolume}`;
  }

  async freeze(): Promise<void> {
    const path = join(this.subvolume, `.refuge-snap-${randomBytes(4).toString('hex')}`);
    await tool('btrfs', ['subvolume', 'snapshot', '-r', this.subvolume, path]);
    this.snapshot = path;
  }

  readPath(path: string): string {
    if (!this.snapshot) return path;
    const rel = relative(this.subvolume, resolve(path));
    return rel.startsWith('..') || isAbsolute(rel) ? path : join(this.snapshot, rel);
  }

  async thaw(): Promise<void> {
    if (!this.snapshot) return;
    const snap = this.snapshot;
    this.snapshot = undefined;
    await tool('btrfs', ['subvolume', 'delete', snap]);
  }
}

/** `--snapshot` of `refuge agent`: fsfreeze:MOUNTPOINT, lvm:VG/LV[:SIZE] or btrfs:SUBVOLUME. */
export function parseSnapshotHook(spec: string): FreezeHook {
  const [kind, ...rest] = spec.split(':');
  const arg = rest.join(':');
  if (kind === 'fsfreeze' && arg) return new FsFreezeHook(resolve(arg));
  if (kind === 'btrfs' && arg) return new BtrfsSnapshotHook(resolve(arg));
  if (kind === 'lvm' && arg) {
    const [volume, size] = arg.split(':') as [string, string | undefined];
    return new LvmSnapshotHook(volume, size);
  }
  throw new RefugeError('invalid_argument', `--snapshot '${spec}' is not a snapshot hook`, { hint: 'use fsfreeze:/mnt/data, lvm:vg0/data[:512M] or btrfs:/srv/images' });
}
