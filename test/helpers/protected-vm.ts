import { writeRegistration } from './registration.js';
import type { ChildProcess } from 'node:child_process';
import { access, mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnRefuge, stopChild } from '../../src/cli/quickstart/children.js';
import { sleep } from '../../src/core/durations.js';
import { GUEST_CMDLINE, GUEST_LINES, ensureDemoGuest, waitForConsole } from '../../src/fabric/demo-guest.js';
import { QemuProvider } from '../../src/fabric/qemu/qemu-provider.js';
import type { VaultProcess } from './vault-process.js';

export interface RunningVm {
  name: string;
  marker: string;
  /** Stops the VM and its agent, and removes the VM's folder (idempotent). */
  stop(): Promise<void>;
}

/**
 * A real VM at site `primary` of vault `demo`, as quickstart runs one: the `refuge agent` process (cdp) serves its
 * disk over NBD and registers the machine, then qemu boots the demo guest, which writes a marker and `dataMiB` of
 * checksummed data. Resolves once the guest is idle; the machine is registered but not yet replicated.
 */
export async function startProtectableVm(v: VaultProcess, o: { dir: string; name: string; diskMiB: number; dataMiB: number; agentArgs?: string[] }): Promise<RunningVm> {
  const guest = await ensureDemoGuest();
  const host = new QemuProvider({ workDir: join(o.dir, 'primary-host') });
  const disk = join(o.dir, 'primary-host', 'disks', `${o.name}-disk0.raw`);
  await mkdir(join(o.dir, 'primary-host', 'disks'), { recursive: true });
  await writeFile(disk, '');
  await truncate(disk, o.diskMiB * 1024 * 1024);
  const credentials = await writeRegistration(v.api.bind(v), v.url, join(o.dir, 'agent-registration.json'));
  const stateDir = join(o.dir, 'agent');
  const agent: ChildProcess = spawnRefuge([
    '--credentials', credentials, 'agent', '--vault', 'demo', '--site', 'primary', '--name', o.name,
    '--disk', `disk0=${disk}`, '--cpus', '1', '--memory-mib', '256',
    '--boot-kernel', guest.kernel, '--boot-initrd', guest.initrd, '--boot-cmdline', GUEST_CMDLINE,
    '--capture', 'cdp', '--state-dir', stateDir, '--heartbeat', '1s', ...(o.agentArgs ?? []),
  ], join(o.dir, 'agent.log'));
  const stop = async () => {
    await host.delete(o.name).catch(() => undefined);
    await stopChild(agent);
  };
  try {
    const socket = join(stateDir, 'nbd', 'disk0.sock');
    for (let i = 0; ; i++) {
      const registered = (await v.api<{ items: { name: string }[] }>('GET', '/vaults/demo/machines')).items.some((m) => m.name === o.name);
      if (registered && (await access(socket).then(() => true, () => false))) break;
      if (i > 120) throw new Error(`agent of ${o.name} did not register and serve its disk within 60 s; see ${join(o.dir, 'agent.log')}`);
      await sleep(500);
    }
    const marker = `portal-${Date.now().toString(36)}`;
    await host.start({
      name: o.name,
      cpus: 1,
      memoryMiB: 256,
      disks: [{ path: `nbd+unix:///disk0?socket=${socket}`, format: 'raw' }],
      boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: `${GUEST_CMDLINE} refuge.marker=${marker} refuge.data_mib=${o.dataMiB}` },
    });
    await waitForConsole(() => host.console(o.name), new RegExp(GUEST_LINES.ready), 240_000, `guest ${o.name}`);
    return { name: o.name, marker, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
