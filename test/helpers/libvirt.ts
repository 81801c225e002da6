import { existsSync, mkdirSync } from 'node:fs';
import { run } from '../../src/core/processes.js';
import { sleep } from '../../src/core/durations.js';

const SOCKET = '/var/run/libvirt/libvirt-sock';

/**
 * Starts libvirt's daemons when they are not running (CI machines have no init system to start them). The
 * packages come from scripts/setup.sh. Fails, never skips, when libvirtd cannot come up.
 */
export async function ensureLibvirtd(): Promise<void> {
  if (existsSync(SOCKET) && (await run('virsh', ['-c', 'qemu:///system', 'version'], { timeoutMs: 30_000 })).code === 0) return;
  mkdirSync('/var/log/libvirt', { recursive: true });
  mkdirSync('/var/run/libvirt', { recursive: true });
  await run('virtlogd', ['-d'], { timeoutMs: 30_000 });
  const r = await run('libvirtd', ['-d'], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`libvirtd did not start: ${r.stderr}`);
  for (let i = 0; i < 120; i++) {
    if (existsSync(SOCKET) && (await run('virsh', ['-c', 'qemu:///system', 'version'], { timeoutMs: 30_000 })).code === 0) return;
    await sleep(250);
  }
  throw new Error('libvirtd started but its socket never answered; see /var/log/libvirt/libvirtd.log');
}
