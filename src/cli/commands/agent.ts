import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Agent } from '../../agent/agent.js';
import type { CaptureMode } from '../../agent/capture/capture-mode.js';
import { CdpCapture } from '../../agent/capture/cdp-capture.js';
import { ScanCapture } from '../../agent/capture/scan-capture.js';
import { diskSize } from '../../agent/disk-size.js';
import { QmpPauseHook, type FreezeHook } from '../../agent/freeze.js';
import { CommandHook, type AppHook } from '../../agent/hooks/app-hooks.js';
import { GuestAgentFreezeHook } from '../../agent/hooks/guest-agent.js';
import { parseSnapshotHook } from '../../agent/hooks/snapshot-hooks.js';
import { RefugeError } from '../../core/errors.js';
import { parseDuration } from '../../core/durations.js';
import { createLogger } from '../../core/log.js';
import { assertValidName } from '../../core/names.js';
import type { BootSpec, DiskFacts } from '../../protocol/schemas.js';
import { identityFor, registerAgentRegistrationCommands } from './agent-registration.js';
import { crashAfterCommit } from '../../agent/crash-after-commit.js';

/** Parses a bandwidth such as "20MB/s", "100MiB", "500k" or "0" (unlimited) into bytes per second. */
export function parseByteRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?)?b?(?:\/s)?$/i.exec(text.trim());
  if (!m) throw new RefugeError('invalid_argument', `'${text}' is not a bandwidth`, { hint: 'use e.g. 20MB/s, 100MiB/s or 0 for unlimited' });
  const unit = (m[2] ?? '').toLowerCase();
  const factor = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 }[unit] ?? 1;
  return Math.round(Number(m[1]) * factor);
}

interface AgentCommandOptions {
  site?: string;
  name?: string;
  disk?: string[];
  capture: string;
  nbdDir?: string;
  cpus: string;
  memoryMib: string;
  os: string;
  bootKernel?: string;
  bootInitrd?: string;
  bootCmdline?: string;
  qmp?: string;
  stateDir: string;
  heartbeat: string;
  bandwidth: string;
  compress: boolean;
  appHook?: string;
  guestAgent?: string;
  hookTimeout: string;
  snapshot?: string;
}

export function registerAgentCommand(program: Command): void {
  const agentCommand = program
    .command('agent')
    .description('run the agent: replicate a registered machine\'s disks (cdp over NBD, or scan); registers first if given a registration file')
    .option('--site <site>', 'the site the machine runs at (required)')
    .option('--name <machine>', 'the machine name (required)')
    .option('--disk <name=path...>', 'a disk of the machine, e.g. disk0=/var/lib/vms/web.raw (repeatable; required to run)')
    .option('--capture <mode>', 'cdp: serve the disks over NBD and track every write; scan: read and compare the disks', 'scan')
    .option('--nbd-dir <dir>', 'cdp: folder for the NBD sockets, one per disk (<dir>/<disk>.sock); default <state-dir>/nbd')
    .option('--cpus <n>', 'vCPUs of the machine', '1')
    .option('--memory-mib <n>', 'memory of the machine, MiB', '256')
    .option('--os <text>', 'operating system of the machine', 'linux')
    .option('--boot-kernel <path>', 'direct kernel boot: kernel image (else the machine boots from its disk)')
    .option('--boot-initrd <path>', 'direct kernel boot: initramfs')
    .option('--boot-cmdline <text>', 'direct kernel boot: kernel command line')
    .option('--qmp <socket>', 'scan: freeze hook, pause the VM through this QMP socket while a point is read')
    .option('--state-dir <dir>', 'where the agent keeps its state', '/var/lib/refuge/agent')
    .option('--heartbeat <duration>', 'heartbeat interval', '10s')
    .option('--bandwidth <rate>', 'limit on bytes sent to the replicator per second, e.g. 20MB/s (0: unlimited)', '0')
    .option('--no-compress', 'send chunks uncompressed')
    .option('--app-hook <command>', 'app-consistent points: run this command before (REFUGE_HOOK_PHASE=pre) and after (post) the cut')
    .option('--guest-agent <socket>', "app-consistent points: freeze the guest's filesystems through its qemu guest agent socket")
    .option('--hook-timeout <duration>', 'longest a hook may take before the point falls back to crash-consistent', '30s')
    .option('--snapshot <hook>', 'scan: hold the disks still while a point is read: fsfreeze:MOUNTPOINT, lvm:VG/LV[:SIZE] or btrfs:SUBVOLUME')
    .action(async (o: AgentCommandOptions, cmd: Command) => {
      if (!o.site || !o.name || !o.disk?.length) throw new RefugeError('invalid_argument', 'the agent needs --site, --name and at least one --disk NAME=PATH');
      const stateDir = resolve(o.stateDir);
      const machine = assertValidName('machine', o.name);
      // Its client certificate (mutual TLS with the vault and replicators); the first run may register it.
      const identity = await identityFor(cmd, stateDir, { kind: 'machine', site: assertValidName('site', o.site), machine });
      const disks: (DiskFacts & { path: string })[] = [];
      for (const spec of o.disk) {
        const eq = spec.indexOf('=');
        if (eq <= 0) throw new RefugeError('invalid_argument', `--disk '${spec}' is not NAME=PATH`, { hint: 'e.g. --disk disk0=/var/lib/vms/web.raw' });
        const name = assertValidName('disk', spec.slice(0, eq));
        const path = resolve(spec.slice(eq + 1));
        disks.push({ name, sizeBytes: await diskSize(path), path });
      }
      const boot: BootSpec = o.bootKernel
        ? { kind: 'kernel', kernel: resolve(o.bootKernel), ...(o.bootInitrd ? { initrd: resolve(o.bootInitrd) } : {}), ...(o.bootCmdline ? { cmdline: o.bootCmdline } : {}) }
        : { kind: 'disk' };
      const log = createLogger('agent');
      let capture: CaptureMode;
      if (o.capture === 'cdp') {
        if (o.qmp) throw new RefugeError('invalid_argument', '--qmp is a scan-mode freeze hook; cdp cuts without pausing the VM');
        const nbdDir = resolve(o.nbdDir ?? join(stateDir, 'nbd'));
        capture = new CdpCapture({ disks: disks.map((d) => ({ name: d.name, path: d.path, socketPath: join(nbdDir, `${d.name}.sock`) })), stateDir: join(stateDir, 'cdp'), machine, log });
      } else if (o.capture === 'scan') {
        if (o.qmp && o.snapshot) throw new RefugeError('invalid_argument', '--qmp and --snapshot are both scan freeze hooks; choose one');
        const freeze: FreezeHook | undefined = o.qmp ? new QmpPauseHook(resolve(o.qmp)) : o.snapshot ? parseSnapshotHook(o.snapshot) : undefined;
        capture = new ScanCapture({ disks, ...(freeze ? { freeze } : {}), log });
      } else {
        throw new RefugeError('invalid_argument', `--capture '${o.capture}' is not a capture mode`, { hint: 'use cdp or scan' });
      }
      const hooks: AppHook[] = [];
      if (o.appHook) hooks.push(new CommandHook(o.appHook));
      if (o.guestAgent) hooks.push(new GuestAgentFreezeHook(resolve(o.guestAgent)));
      const agent = new Agent({
        vaultUrl: identity.url,
        vault: identity.vault,
        site: o.site,
        machine: { name: machine, hostname: hostname(), os: o.os, cpus: Number(o.cpus), memoryMiB: Number(o.memoryMib), disks, boot },
        capture,
        stateDir,
        heartbeatSeconds: parseDuration(o.heartbeat),
        bandwidthBytesPerSecond: parseByteRate(o.bandwidth),
        compress: o.compress,
        hooks,
        hookTimeoutSeconds: parseDuration(o.hookTimeout),
        log,
        // Exists for the crash test only (src/agent/crash-after-commit.ts).
        ...(process.env.REFUGE_TEST_CRASH_AFTER_COMMIT ? { onCommitAnswered: crashAfterCommit(Number(process.env.REFUGE_TEST_CRASH_AFTER_COMMIT)) } : {}),
      });
      const stop = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort(new Error(sig)));
      log.info({ machine, capture: capture.kind, disks: disks.map((d) => d.name) }, 'agent starting');
      await agent.run(stop.signal);
    });
  registerAgentRegistrationCommands(agentCommand);
}
