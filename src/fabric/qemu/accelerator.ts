import { access, constants, readFile } from 'node:fs/promises';
import { run } from '../../core/processes.js';

export type Accelerator = 'kvm' | 'tcg';

let cached: Promise<Accelerator> | undefined;

/**
 * Chooses KVM when it really works, TCG (software emulation) otherwise. `/dev/kvm` can exist on a host whose CPU
 * exposes no virtualization extensions, where `-accel kvm` hangs; so the probe checks the CPU flags first and then
 * asks a short-lived qemu (with a timeout) whether KVM is enabled. REFUGE_QEMU_ACCEL=kvm|tcg overrides the probe.
 */
export function probeAccelerator(binary = 'qemu-system-x86_64'): Promise<Accelerator> {
  const forced = process.env.REFUGE_QEMU_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return Promise.resolve(forced);
  cached ??= probe(binary);
  return cached;
}

async function probe(binary: string): Promise<Accelerator> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  if (!/\b(vmx|svm)\b/.test(cpuinfo)) return 'tcg';
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'tcg';
  }
  const qmp = ['qmp_capabilities', 'query-kvm', 'quit'].map((c) => JSON.stringify({ execute: c })).join('\n');
  const result = await run(binary, ['-accel', 'kvm', '-M', 'none', '-display', 'none', '-nodefaults', '-qmp', 'stdio'], {
    timeoutMs: 5000,
    input: qmp + '\n',
  }).catch(() => undefined);
  return result?.stdout.includes('"enabled": true') ? 'kvm' : 'tcg';
}
