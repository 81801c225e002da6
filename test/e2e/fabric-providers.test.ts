import { chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { GUEST_CMDLINE, GUEST_LINES, ensureDemoGuest, waitForConsole } from '../../src/fabric/demo-guest.js';
import { createFabricProvider, type FabricConfig } from '../../src/fabric/create-provider.js';
import type { FabricProvider } from '../../src/fabric/provider.js';
import { describeFabricContract } from '../helpers/fabric-contract.js';
import { ensureLibvirtd } from '../helpers/libvirt.js';

/**
 * The libvirt and command providers against real VMs booting the demo guest: the same contract as the built-in
 * qemu provider (test/e2e/qemu-provider.test.ts).
 */
const root = join(import.meta.dirname, '..', '..');

function contractFor(name: string, config: (dir: string) => FabricConfig, prepare: (dir: string) => Promise<void>) {
  describeFabricContract(name, async (dir) => {
    await prepare(dir);
    const guest = await ensureDemoGuest();
    const make = (): FabricProvider => createFabricProvider(config(dir), 'contract');
    const provider = make();
    return {
      provider,
      reopen: make,
      boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: `${GUEST_CMDLINE} refuge.marker=${name} refuge.data_mib=1` },
      guestStarted: async (p, m) => {
        await waitForConsole(() => p.console(m), new RegExp(GUEST_LINES.ready), 180_000, `the ${name} guest`);
      },
      cleanup: async () => provider.delete('m1').catch(() => undefined),
    };
  });
}

contractFor(
  'libvirt',
  (dir) => ({ kind: 'libvirt', workDir: join(dir, 'machines'), uri: 'qemu:///system' }),
  async (dir) => {
    await ensureLibvirtd();
    await chmod(dir, 0o755); // libvirt's qemu user must reach the disks and write the console log
  },
);

contractFor(
  'command',
  (dir) => {
    const hook = join(root, 'examples', 'fabric-command', 'qemu-hooks.sh');
    return { kind: 'command', workDir: join(dir, 'machines'), hooks: { start: hook, status: hook, stop: hook, delete: hook, console: hook } };
  },
  async () => undefined,
);
