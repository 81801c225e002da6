import { hostname } from 'node:os';
import { basename, resolve } from 'node:path';
import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { Agent } from '../../agent/agent.js';
import { QmpPauseHook } from '../../agent/freeze.js';
import { RefugeError } from '../../core/errors.js';
import { parseDuration } from '../../core/durations.js';
import { createLogger } from '../../core/log.js';
import { assertValidName } from '../../core/names.js';
import type { BootSpec, DiskFacts } from '../../protocol/schemas.js';
import { globals } from '../context.js';

/** Size of a disk image file or block device (stat reports 0 for block devices; sysfs knows their size). */
async function diskSize(path: string): Promise<number> {
  const s = await stat(path).catch((err: unknown) => {
    throw RefugeError.wrap(err, `disk ${path}`, 'invalid_argument');
  });
  if (s.isFile()) return s.size;
  if (s.isBlockDevice()) {
    const sectors = await readFile(`/sys/class/block/${basename(path)}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  }
  throw new RefugeError('invalid_argument', `${path} is neither a disk image file nor a block device`);
}

export function registerAgentCommand(program: Command): void {
  program
    .command('agent')
    .description('run the agent: register a machine with the vault and replicate its disks (scan mode)')
    .requiredOption('--site <site>', 'the site the machine runs at')
    .requiredOption('--name <machine>', 'the machine name to register')
    .requiredOption('--disk <name=path...>', 'a disk of the machine, e.g. disk0=/var/lib/vms/web.raw (repeatable)')
    .option('--cpus <n>', 'vCPUs of the machine', '1')
    .option('--memory-mib <n>', 'memory of the machine, MiB', '256')
    .option('--os <text>', 'operating system of the machine', 'linux')
    .option('--boot-kernel <path>', 'direct kernel boot: kernel image (else the machine boots from its disk)')
    .option('--boot-initrd <path>', 'direct kernel boot: initramfs')
    .option('--boot-cmdline <text>', 'direct kernel boot: kernel command line')
    .option('--qmp <socket>', "freeze hook: pause the VM through this QMP socket while a point is cut")
    .option('--state-dir <dir>', 'where the agent keeps its state', '/var/lib/refuge/agent')
    .option('--heartbeat <duration>', 'heartbeat interval', '10s')
    .action(async (o: {
      site: string; name: string; disk: string[]; cpus: string; memoryMib: string; os: string;
      bootKernel?: string; bootInitrd?: string; bootCmdline?: string; qmp?: string; stateDir: string; heartbeat: string;
    }, cmd: Command) => {
      const { client, url } = globals(cmd);
      const connection = client.connection;
      const diskPaths: Record<string, string> = {};
      const disks: DiskFacts[] = [];
      for (const spec of o.disk) {
        const eq = spec.indexOf('=');
        if (eq <= 0) throw new RefugeError('invalid_argument', `--disk '${spec}' is not NAME=PATH`, { hint: 'e.g. --disk disk0=/var/lib/vms/web.raw' });
        const name = assertValidName('disk', spec.slice(0, eq));
        const path = resolve(spec.slice(eq + 1));
        diskPaths[name] = path;
        disks.push({ name, sizeBytes: await diskSize(path), path });
      }
      const boot: BootSpec = o.bootKernel
        ? { kind: 'kernel', kernel: resolve(o.bootKernel), ...(o.bootInitrd ? { initrd: resolve(o.bootInitrd) } : {}), ...(o.bootCmdline ? { cmdline: o.bootCmdline } : {}) }
        : { kind: 'disk' };
      const log = createLogger('agent');
      const agent = new Agent({
        vaultUrl: url,
        vault: await client.vault(),
        site: o.site,
        machine: { name: assertValidName('machine', o.name), hostname: hostname(), os: o.os, cpus: Number(o.cpus), memoryMiB: Number(o.memoryMib), disks, boot },
        diskPaths,
        stateDir: o.stateDir,
        ...(o.qmp ? { freeze: new QmpPauseHook(resolve(o.qmp)) } : {}),
        heartbeatSeconds: parseDuration(o.heartbeat),
        connection,
        log,
      });
      const stop = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort(new Error(sig)));
      log.info({ machine: o.name, disks: Object.keys(diskPaths) }, 'agent starting');
      await agent.run(stop.signal);
    });
}
