import { describe, expect, it } from 'vitest';
import { BtrfsSnapshotHook, FsFreezeHook, LvmSnapshotHook, parseSnapshotHook } from '../../../src/agent/hooks/snapshot-hooks.js';

/**
 * The scan snapshot hooks' parsing and path mapping (their real runs are in test/e2e/agent-scan-snapshots.test.ts:
 * fsfreeze and btrfs on loop devices; LVM needs the kernel's device-mapper, which these machines lack).
 */
describe('scan snapshot hooks', () => {
  it('parses --snapshot specs and refuses others with the forms it takes', () => {
    expect(parseSnapshotHook('fsfreeze:/mnt/data').description).toBe('fsfreeze /mnt/data');
    expect(parseSnapshotHook('lvm:vg0/data:512M').description).toBe('LVM snapshot of vg0/data');
    expect(parseSnapshotHook('btrfs:/srv/images').description).toBe('btrfs snapshot of /srv/images');
    expect(() => parseSnapshotHook('zfs:tank/vm')).toThrow(expect.objectContaining({ code: 'invalid_argument', message: "--snapshot 'zfs:tank/vm' is not a snapshot hook", hint: 'use fsfreeze:/mnt/data, lvm:vg0/data[:512M] or btrfs:/srv/images' }) as unknown);
    expect(() => parseSnapshotHook('lvm:data')).toThrow(/'data' is not VG\/LV/);
    expect(() => parseSnapshotHook('fsfreeze:')).toThrow(/not a snapshot hook/);
  });

  it('reads the origin from the snapshot only while it exists', async () => {
    const lvm = new LvmSnapshotHook('vg-0/data');
    expect(lvm.readPath('/dev/vg-0/data')).toBe('/dev/vg-0/data'); // no snapshot yet
    (lvm as unknown as { snapshot: string }).snapshot = 'vg-0/refuge-snap-1';
    expect(lvm.readPath('/dev/vg-0/data')).toBe('/dev/vg-0/refuge-snap-1');
    expect(lvm.readPath('/dev/mapper/vg--0-data')).toBe('/dev/vg-0/refuge-snap-1');
    expect(lvm.readPath('/dev/vg-0/other')).toBe('/dev/vg-0/other');

    const btrfs = new BtrfsSnapshotHook('/srv/images');
    (btrfs as unknown as { snapshot: string }).snapshot = '/srv/images/.refuge-snap-1';
    expect(btrfs.readPath('/srv/images/vm1/disk0.raw')).toBe('/srv/images/.refuge-snap-1/vm1/disk0.raw');
    expect(btrfs.readPath('/srv/other/disk0.raw')).toBe('/srv/other/disk0.raw');
  });

  it('a freeze that fails says which command failed and why', async () => {
    await expect(new FsFreezeHook('/proc').freeze()).rejects.toMatchObject({ code: 'failed_precondition', message: expect.stringMatching(/^fsfreeze --freeze \/proc failed: /) as unknown as string });
  });
});
