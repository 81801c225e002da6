import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GUEST_CMDLINE, GUEST_LINES, ensureDemoGuest, waitForConsole } from '../../src/fabric/demo-guest.js';
import { QemuProvider } from '../../src/fabric/qemu/qemu-provider.js';
import { probeAccelerator } from '../../src/fabric/qemu/accelerator.js';
import { describeFabricContract } from '../helpers/fabric-contract.js';

/** The built-in qemu provider against real VMs booting the demo guest (TCG where KVM does not work). */
describeFabricContract('qemu', async (dir) => {
  const guest = await ensureDemoGuest();
  const workDir = join(dir, 'machines');
  const provider = new QemuProvider({ workDir });
  return {
    provider,
    reopen: () => new QemuProvider({ workDir }),
    boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: `${GUEST_CMDLINE} refuge.marker=contract refuge.data_mib=1` },
    guestStarted: async (p, name) => {
      await waitForConsole(() => p.console(name), new RegExp(GUEST_LINES.ready), 120_000);
    },
    cleanup: async () => {
      for (const m of ['m1']) await provider.delete(m).catch(() => undefined);
    },
  };
});

describe('qemu accelerator probe', () => {
  it('answers kvm or tcg without hanging', async () => {
    expect(['kvm', 'tcg']).toContain(await probeAccelerator());
  });
});
