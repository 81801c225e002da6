import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { run } from '../../src/core/processes.js';
import { sleep } from '../../src/core/durations.js';
import { probeAccelerator } from '../../src/fabric/qemu/accelerator.js';

const SOCKET = '/var/run/libvirt/libvirt-sock';
const RUN_DIR = '/run/refuge-libvirt';

/**
 * Starts libvirt's daemons when they are not running (CI machines have no init system to start them). The
 * packages come from scripts/setup.sh. Fails, never skips, when libvirtd cannot come up.
 *
 * On a host where /dev/kvm exists but KVM does not work (a VM without nested virtualization, as CI machines are),
 * libvirt takes ~50 s per `virsh create`: its cached qemu capabilities say "no KVM" while /dev/kvm is accessible
 * to its qemu user, so it decides the cache is stale ("KVM was [not] enabled when probing ..., but ...") and probes
 * qemu again on every domain start. There libvirtd is started in its own mount namespace where /dev/kvm is masked
 * (an unreadable file bound over it), so what libvirt sees matches what works and the cache stays valid; libvirt's
 * per-domain /dev namespaces are turned off in that namespace's qemu.conf, since they would try to recreate the
 * masked node. Nothing changes for any other process: `virsh create` then takes about a second.
 */
export async function ensureLibvirtd(): Promise<void> {
  if (existsSync(SOCKET) && (await run('virsh', ['-c', 'qemu:///system', 'version'], { timeoutMs: 30_000 })).code === 0) return;
  mkdirSync('/var/log/libvirt', { recursive: true });
  mkdirSync('/var/run/libvirt', { recursive: true });
  let r;
  if (existsSync('/dev/kvm') && (await probeAccelerator()) === 'tcg') {
    mkdirSync(RUN_DIR, { recursive: true });
    writeFileSync(`${RUN_DIR}/no-kvm`, '', { mode: 0o000 });
    writeFileSync(`${RUN_DIR}/qemu.conf`, `${readFileSync('/etc/libvirt/qemu.conf', 'utf8')}\nnamespaces = [ ]\n`);
    const script = `mount --bind ${RUN_DIR}/no-kvm /dev/kvm && mount --bind ${RUN_DIR}/qemu.conf /etc/libvirt/qemu.conf && virtlogd -d && libvirtd -d`;
    r = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { timeoutMs: 30_000 });
  } else {
    await run('virtlogd', ['-d'], { timeoutMs: 30_000 });
    r = await run('libvirtd', ['-d'], { timeoutMs: 30_000 });
  }
  if (r.code !== 0) throw new Error(`libvirtd did not start: ${r.stderr}`);
  for (let i = 0; i < 120; i++) {
    if (existsSync(SOCKET) && (await run('virsh', ['-c', 'qemu:///system', 'version'], { timeoutMs: 30_000 })).code === 0) return;
    await sleep(250);
  }
  throw new Error('libvirtd started but its socket never answered; see /var/log/libvirt/libvirtd.log');
}
