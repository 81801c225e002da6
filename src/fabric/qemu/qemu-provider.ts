import { mkdir, readFile, rm, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { RefugeError } from '../../core/errors.js';
import { assertValidName } from '../../core/names.js';
import { isProcessAlive, run } from '../../core/processes.js';
import { sleep } from '../../core/durations.js';
import type { FabricProvider, MachineSpec, MachineStatus } from '../provider.js';
import { probeAccelerator, type Accelerator } from './accelerator.js';
import { qmpOnce } from './qmp.js';
import { blockdevArgs, prepareInstantDisk } from './instant-disks.js';
import { QemuHydration } from './hydration.js';
import { nicArgs } from './networks.js';

export interface QemuProviderOptions {
  /** Folder holding one sub-folder per machine: pid file, QMP socket, serial console log, spec. */
  workDir: string;
  binary?: string;
  accelerator?: Accelerator | 'auto';
}

/**
 * The built-in fabric provider: each machine is a daemonized qemu process controlled through QMP. Machines keep
 * running when the process that started them exits; their state is rediscovered from the pid file and QMP.
 */
export class QemuProvider implements FabricProvider {
  readonly kind = 'qemu';
  readonly hydration: QemuHydration;
  private readonly binary: string;

  constructor(private readonly options: QemuProviderOptions) {
    this.binary = options.binary ?? 'qemu-system-x86_64';
    this.hydration = new QemuHydration((name) => this.dir(name));
  }

  private dir(name: string): string {
    return join(this.options.workDir, assertValidName('machine', name));
  }

  async start(spec: MachineSpec): Promise<MachineStatus> {
    const dir = this.dir(spec.name);
    const current = await this.status(spec.name);
    if (current.state === 'running' || current.state === 'paused' || current.state === 'starting') {
      throw new RefugeError('already_exists', `machine '${spec.name}' is already running at this site (pid ${current.pid})`);
    }
    await mkdir(dir, { recursive: true });
    await rm(join(dir, 'qmp.sock'), { force: true });
    await rm(join(dir, 'qemu.pid'), { force: true });
    await rm(join(dir, 'hydration.json'), { force: true });
    for (const [i, disk] of spec.disks.entries()) await prepareInstantDisk(dir, i, disk);
    await rename(join(dir, 'console.log'), join(dir, 'console.previous.log')).catch(() => undefined);
    const accel =
      this.options.accelerator && this.options.accelerator !== 'auto'
        ? this.options.accelerator
        : await probeAccelerator(this.binary);
    const args = [
      '-name', spec.name,
      '-accel', accel,
      '-m', String(spec.memoryMiB),
      '-smp', String(spec.cpus),
      '-nodefaults',
      '-display', 'none',
      '-no-reboot',
      '-serial', `file:${join(dir, 'console.log')}`,
      '-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
      '-pidfile', join(dir, 'qemu.pid'),
      '-daemonize',
      ...nicArgs(spec.nics ?? []),
    ];
    if (spec.disks.some((d) => d.instant)) args.push(...blockdevArgs(dir, spec.disks));
    else for (const disk of spec.disks) args.push('-drive', driveOption(disk));
    if (spec.boot.kind === 'kernel') {
      args.push('-kernel', spec.boot.kernel);
      if (spec.boot.initrd) args.push('-initrd', spec.boot.initrd);
      args.push('-append', spec.boot.cmdline ?? '');
    }
    const startedAt = new Date().toISOString();
    await writeFile(join(dir, 'machine.json'), JSON.stringify({ spec, accel, startedAt, args }, null, 2));
    const result = await run(this.binary, args, { timeoutMs: 60_000 });
    if (result.code !== 0) {
      throw new RefugeError('failed_precondition', `qemu could not start machine '${spec.name}': ${result.stderr.trim() || `exit ${result.code}`}`, {
        hint: 'check the disk paths and the boot files; the full command is in machine.json beside the console log',
      });
    }
    return this.status(spec.name);
  }

  async status(name: string): Promise<MachineStatus> {
    const dir = this.dir(name);
    const pid = await this.readPid(dir);
    if (pid === undefined) {
      const exists = await readFile(join(dir, 'machine.json')).then(() => true, () => false);
      return { state: exists ? 'stopped' : 'absent' };
    }
    const startedAt = await this.startedAt(dir);
    try {
      const s = await qmpOnce<{ status: string; running: boolean }>(join(dir, 'qmp.sock'), 'query-status');
      const state = s.running ? 'running' : s.status === 'paused' ? 'paused' : s.status === 'shutdown' ? 'stopped' : 'starting';
      return { state, pid, ...(startedAt ? { startedAt } : {}) };
    } catch {
      // The process exists but QMP is not answering yet (just started) or any more (exiting).
      return { state: isProcessAlive(pid) ? 'starting' : 'stopped', pid };
    }
  }

  async stop(name: string, options: { graceful?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const dir = this.dir(name);
    const pid = await this.readPid(dir);
    if (pid === undefined) return;
    const qmp = join(dir, 'qmp.sock');
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    if (options.graceful) {
      await qmpOnce(qmp, 'system_powerdown').catch(() => undefined);
      while (Date.now() < deadline && isProcessAlive(pid)) await sleep(200);
    }
    if (isProcessAlive(pid)) await qmpOnce(qmp, 'quit').catch(() => undefined);
    const hardDeadline = Date.now() + 5000;
    while (Date.now() < hardDeadline && isProcessAlive(pid)) await sleep(100);
    if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
    while (isProcessAlive(pid)) await sleep(50);
    await rm(join(dir, 'qemu.pid'), { force: true });
  }

  async delete(name: string): Promise<void> {
    await this.stop(name);
    await rm(this.dir(name), { recursive: true, force: true });
  }

  async console(name: string): Promise<string> {
    return readFile(join(this.dir(name), 'console.log'), 'utf8').catch(() => '');
  }

  /** The pid of a live qemu for this machine; a stale pid file (process gone or pid reused) yields undefined. */
  private async readPid(dir: string): Promise<number | undefined> {
    const text = await readFile(join(dir, 'qemu.pid'), 'utf8').catch(() => '');
    const pid = Number.parseInt(text.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0 || !isProcessAlive(pid)) return undefined;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return cmdline.includes(dir) ? pid : undefined;
  }

  private async startedAt(dir: string): Promise<string | undefined> {
    const text = await readFile(join(dir, 'machine.json'), 'utf8').catch(() => '');
    return text ? (JSON.parse(text) as { startedAt?: string }).startedAt : undefined;
  }
}

/**
 * qemu's -drive value for a disk: a raw image file, or a disk served by a cdp agent over NBD (`nbd+unix:///NAME?
 * socket=PATH`). An NBD disk gets a reconnect delay, so the VM rides out a restart of its agent (an upgrade, a
 * crash) with I/O held for up to a minute instead of failing it.
 */
export function driveOption(disk: { path: string; format: 'raw' }): string {
  const esc = (v: string) => v.replaceAll(',', ',,');
  const nbd = /^nbd\+unix:\/\/\/([^?]*)\?socket=(.+)$/.exec(disk.path);
  if (!nbd) return `file=${esc(resolve(disk.path))},format=${disk.format},if=virtio`;
  const exportName = nbd[1] ?? '';
  const socket = nbd[2] ?? '';
  return [
    'file.driver=nbd', 'file.server.type=unix', `file.server.path=${esc(socket)}`, `file.export=${esc(exportName)}`,
    'file.reconnect-delay=60', `format=${disk.format}`, 'if=virtio',
  ].join(',');
}
