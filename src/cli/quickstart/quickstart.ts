import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { RefugeError } from '../../core/errors.js';
import { packageRoot } from '../../core/package-root.js';
import { run } from '../../core/processes.js';
import type { CredentialsFile } from '../../api/vault-init.js';
import { formatSeconds, sleep } from '../../core/durations.js';
import { sha256File } from '../../core/hash-file.js';
import { QemuProvider } from '../../fabric/qemu/qemu-provider.js';
import { GUEST_CMDLINE, GUEST_LINES, ensureDemoGuest, waitForConsole } from '../../fabric/demo-guest.js';
import type { JobView } from '../../vault/jobs/definitions.js';
import { ApiClient } from '../client.js';
import { followJob } from '../progress.js';
import { getReplication, watchReplication } from '../commands/replication.js';
import { spawnRefuge, stopChild, waitForOutput } from './children.js';

export interface QuickstartOptions {
  dir: string;
  keep: boolean;
  /** Print only the final JSON summary on stdout. */
  quiet: boolean;
  diskMiB: number;
  dataMiB: number;
  crashIntervalSeconds: number;
  /** cdp: the VM's disk is served by the agent over NBD (no pause); scan: the agent scans it, pausing the VM via QMP. */
  capture: 'cdp' | 'scan';
}

export interface QuickstartSummary {
  vaultUrl: string;
  vaultDataDir: string;
  replicationId: string;
  marker: string;
  sourceDisk: string;
  /** SHA-256 of the source disk when its guest was done writing, and again when the primary was stopped. */
  sourceDiskSha256: { atReady: string; atStop: string };
  guestReadyAt: string;
  testFailover: { pointId: string; markerRead: string; dataVerified: boolean; guestDiskSha256: string };
  failover: {
    pointId: string;
    pointCapturedAt: string;
    requestedAt: string;
    machineRunningAt: string;
    guestReadyAt: string;
    markerRead: string;
    dataVerified: boolean;
    /** SHA-256 of the whole disk as the failed-over guest found it at boot, before mounting it. */
    guestDiskSha256: string;
    recoveredDisk: string;
  };
  /** Age of the recovery point used, at the moment failover was requested. */
  rpoSeconds: number;
  /** From the failover request to the recovered guest reporting ready. */
  rtoSeconds: number;
  /** From the failover request to the recovered machine's process running (orchestration overhead + restore). */
  machineStartSeconds: number;
}

const VAULT = 'demo';
const MACHINE = 'demo-vm';

/**
 * `refuge quickstart`: the whole product on one machine. A vault with sites `primary` and `recovery`, a tiny VM at
 * `primary` writing a marker and data, an agent replicating it, a test failover that boots the copy at `recovery`
 * where the guest reads the marker back, cleanup, then a failover and commit, with the measured RPO and RTO.
 */
export async function runQuickstart(o: QuickstartOptions): Promise<QuickstartSummary> {
  const dir = resolve(o.dir);
  const step = (() => {
    let n = 0;
    return (text: string) => {
      if (!o.quiet) process.stdout.write(`\n[${++n}/12] ${text}\n`);
    };
  })();
  const info = (text: string) => {
    if (!o.quiet) process.stdout.write(`  ${text}\n`);
  };
  const logs = join(dir, 'logs');
  const primaryHost = new QemuProvider({ workDir: join(dir, 'primary-host') });
  const children: ChildProcess[] = [];
  let recoverySite: QemuProvider | undefined;

  // A previous run may have left machines running in this folder; stop them before wiping it.
  await primaryHost.delete(MACHINE).catch(() => undefined);
  for (const name of [MACHINE, `${MACHINE}-test`]) {
    await new QemuProvider({ workDir: join(dir, 'vault', 'sites', 'recovery', 'machines') }).delete(name).catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(logs, { recursive: true });

  try {
    step('Preparing the demo guest (Debian kernel + busybox)');
    const guest = await ensureDemoGuest();
    info(`kernel ${guest.kernel}`);

    step('Initializing and starting the vault (HTTPS with its own CA, SQLite, filesystem replica store, built-in qemu fabric)');
    const init = await run(process.execPath, [join(packageRoot(), 'bin', 'refuge.js'), '--json', 'vault', 'init', '--data', join(dir, 'vault'), '--owner', 'quickstart']);
    if (init.code !== 0) throw new RefugeError('failed_precondition', `refuge vault init failed: ${init.stderr.trim()}`);
    const { credentialsPath, password } = JSON.parse(init.stdout) as { credentialsPath: string; password?: string };
    const credentials = JSON.parse(await readFile(credentialsPath, 'utf8')) as CredentialsFile;
    const vaultLog = join(logs, 'vault.log');
    const vaultProc = spawnRefuge(['vault', '--data', join(dir, 'vault'), '--listen', '127.0.0.1:0'], vaultLog);
    children.push(vaultProc);
    const url = (await waitForOutput(vaultProc, /vault listening on (\S+)/, 30_000, vaultLog))[1] as string;
    const api = new ApiClient(url, VAULT, { token: credentials.token, ca: credentials.ca });
    info(`vault API at ${url}/api/v1 (log: ${vaultLog}); owner "quickstart", credentials in ${credentialsPath}`);

    step('Creating vault "demo", sites "primary" and "recovery", policy "quickstart"');
    await api.request('POST', '/vaults', { name: VAULT });
    await api.request('POST', `/vaults/${VAULT}/sites`, { name: 'primary', capacity: { vcpus: 4, memoryMiB: 4096, diskGiB: 20 } });
    await api.request('POST', `/vaults/${VAULT}/sites`, { name: 'recovery', capacity: { vcpus: 4, memoryMiB: 4096, diskGiB: 20 } });
    await api.request('PATCH', `/vaults/${VAULT}`, { location: 'recovery' });
    await api.request('POST', `/vaults/${VAULT}/policies`, { name: 'quickstart', crashIntervalSeconds: o.crashIntervalSeconds, rpoThresholdSeconds: 60 });
    await writeFile(join(dir, 'portal-login.txt'), `user quickstart\npassword ${password ?? '(see refuge vault init)'}\n`, { mode: 0o600 });
    info(`vault lives at "recovery" (so a primary outage leaves it able to fail over); points every ${o.crashIntervalSeconds} s`);

    // The agent registers the real way: a one-time key in a registration file (`refuge agent key create --write`),
    // redeemed by `refuge agent register` for a client certificate; the agent then uses mutual TLS only.
    const agentCredentials = join(dir, 'agent-registration.json');
    const keyCreate = await run(process.execPath, [join(packageRoot(), 'bin', 'refuge.js'), '--credentials', credentialsPath, '--url', url, '--vault', VAULT, 'agent', 'key', 'create', '--write', agentCredentials]);
    if (keyCreate.code !== 0) throw new RefugeError('failed_precondition', `refuge agent key create failed: ${keyCreate.stderr.trim()}`);
    const registration = await run(process.execPath, [join(packageRoot(), 'bin', 'refuge.js'), '--credentials', agentCredentials, 'agent', 'register', '--site', 'primary', '--name', MACHINE, '--state-dir', join(dir, 'agent')]);
    if (registration.code !== 0) throw new RefugeError('failed_precondition', `refuge agent register failed: ${registration.stderr.trim()}`);
    info(`agent registered with a one-time key: its client certificate is in ${join(dir, 'agent', 'identity')}`);

    const marker = `quickstart-${randomBytes(4).toString('hex')}`;
    const diskPath = join(dir, 'primary-host', 'disks', `${MACHINE}-disk0.raw`);
    await mkdir(join(dir, 'primary-host', 'disks'), { recursive: true });
    await writeFile(diskPath, '');
    await truncate(diskPath, o.diskMiB * 1024 * 1024);
    const agentLog = join(logs, 'agent.log');
    const startAgent = () => {
      const agent = spawnRefuge([
        'agent', '--site', 'primary', '--name', MACHINE,
        '--disk', `disk0=${diskPath}`, '--cpus', '1', '--memory-mib', '256',
        '--boot-kernel', guest.kernel, '--boot-initrd', guest.initrd, '--boot-cmdline', `${GUEST_CMDLINE} refuge.disk_hash=1`,
        '--capture', o.capture,
        ...(o.capture === 'scan' ? ['--qmp', join(dir, 'primary-host', MACHINE, 'qmp.sock')] : []),
        '--state-dir', join(dir, 'agent'), '--heartbeat', '1s',
      ], agentLog);
      children.push(agent);
      return agent;
    };
    const registered = async () => {
      await until(async () => (await api.get<{ items: { name: string }[] }>(`/vaults/${VAULT}/machines`)).items.some((m) => m.name === MACHINE), 30_000, 'agent registration');
      info(`machine "${MACHINE}" registered (log: ${agentLog})`);
    };
    // cdp: the agent comes first, because the VM's disk is the agent's NBD export; scan: the agent reads the image.
    let agent: ChildProcess | undefined;
    if (o.capture === 'cdp') {
      step('Starting the agent for the VM (cdp: it serves the VM\'s disk over NBD and sees every write)');
      agent = startAgent();
      await registered();
    }

    step(`Booting VM "${MACHINE}" at primary; its guest writes a marker and ${o.dataMiB} MiB of data`);
    const nbdSocket = join(dir, 'agent', 'nbd', 'disk0.sock');
    if (o.capture === 'cdp') await until(async () => access(nbdSocket).then(() => true, () => false), 30_000, "the agent's NBD socket");
    await primaryHost.start({
      name: MACHINE,
      cpus: 1,
      memoryMiB: 256,
      disks: [{ path: o.capture === 'cdp' ? `nbd+unix:///disk0?socket=${nbdSocket}` : diskPath, format: 'raw' }],
      boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: `${GUEST_CMDLINE} refuge.marker=${marker} refuge.data_mib=${o.dataMiB}` },
    });
    if (o.capture === 'cdp') info(`its disk is ${diskPath}, attached through the agent at ${nbdSocket}`);
    const primaryConsole = () => primaryHost.console(MACHINE);
    await waitForConsole(primaryConsole, new RegExp(`${GUEST_LINES.markerWritten}${marker}`), 180_000, 'the primary guest');
    await waitForConsole(primaryConsole, new RegExp(GUEST_LINES.ready), 60_000, 'the primary guest');
    const guestReadyAt = new Date();
    const sourceAtReady = await sha256File(diskPath);
    info(`guest wrote marker "${marker}" and its data, synced, and is idle (disk sha256 ${sourceAtReady.slice(0, 16)}...)`);

    if (o.capture === 'scan') {
      step('Starting the agent for the VM (scan mode, QMP pause as the freeze hook)');
      agent = startAgent();
      await registered();
    }

    step('Enabling replication primary -> recovery; seeding');
    const enabled = await api.request<{ id: string }>('POST', `/vaults/${VAULT}/replications`, { machine: MACHINE, policy: 'quickstart', targetSite: 'recovery' });
    if (o.quiet) await until(async () => (await getReplication(api, MACHINE)).state === 'protected', 300_000, 'seeding');
    else await watchReplication(api, MACHINE, (r) => r.state === 'protected');

    step('Waiting for a recovery point taken after the guest finished writing');
    const point = await until(async () => {
      const r = await getReplication(api, MACHINE);
      const p = r.rpo?.latestPoint;
      return p && Date.parse(p.capturedAt) > guestReadyAt.getTime() ? p : undefined;
    }, 120_000, 'a recovery point');
    info(`point ${point.id} captured at ${point.capturedAt}`);

    // A recovery plan for the portal's demo data: the machine in one group, a manual check after it.
    await api.request('POST', `/vaults/${VAULT}/recovery-plans`, {
      name: 'demo-plan',
      description: 'the demo VM, then a manual check',
      groups: [{ name: 'app', replications: [MACHINE], post: [{ name: 'check-app', kind: 'manual', target: 'confirm the demo VM answers' }] }],
    });

    step('Test failover: booting the copy at recovery in isolation (replication continues)');
    recoverySite = new QemuProvider({ workDir: join(dir, 'vault', 'sites', 'recovery', 'machines') });
    const tfJob = await operation(api, 'test-failover', point.id, o.quiet);
    const testConsole = () => api.text(`/vaults/${VAULT}/sites/recovery/machines/${MACHINE}-test/console`);
    const tfMarker = (await waitForConsole(testConsole, new RegExp(`${GUEST_LINES.markerRead}(\\S+)`), 180_000, 'the test failover guest'))[1] as string;
    const tfVerified = (await waitForConsole(testConsole, new RegExp(`${GUEST_LINES.dataVerified}|data corrupt`), 60_000, 'the test failover guest'))[0] === GUEST_LINES.dataVerified;
    const tfDiskHash = diskHashIn(await testConsole());
    info(`test copy booted from point ${String(tfJob.result.pointId)}: guest read marker "${tfMarker}"${tfVerified ? ', data verified' : ', DATA CORRUPT'}`);
    info(`its disk, as the guest found it: sha256 ${tfDiskHash.slice(0, 16)}... ${tfDiskHash === sourceAtReady ? '= the source disk at the point' : '!= THE SOURCE DISK'}`);
    if (tfMarker !== marker || !tfVerified || tfDiskHash !== sourceAtReady) {
      throw new RefugeError('integrity', `test failover guest read "${tfMarker}" (data verified: ${tfVerified}, disk ${tfDiskHash}), expected "${marker}" on disk ${sourceAtReady}`);
    }

    step('Cleaning up the test failover');
    await operation(api, 'test-failover-cleanup', undefined, o.quiet);
    info('test copy and its disks removed');

    step('Simulating the loss of the primary site: stopping the VM and its agent');
    await primaryHost.stop(MACHINE);
    if (agent) await stopChild(agent);
    const sourceAtStop = await sha256File(diskPath);
    info('primary VM and agent are gone');

    step('Failover to the latest recovery point at recovery');
    const requestedAt = new Date();
    const foJob = await operation(api, 'failover', 'latest', o.quiet);
    const foConsole = () => api.text(`/vaults/${VAULT}/sites/recovery/machines/${MACHINE}/console`);
    const foMarker = (await waitForConsole(foConsole, new RegExp(`${GUEST_LINES.markerRead}(\\S+)`), 180_000, 'the failed-over guest'))[1] as string;
    await waitForConsole(foConsole, new RegExp(GUEST_LINES.ready), 60_000, 'the failed-over guest');
    const foReadyAt = new Date();
    const foText = await foConsole();
    const foVerified = foText.includes(GUEST_LINES.dataVerified);
    const foDiskHash = diskHashIn(foText);
    info(`failed-over guest read marker "${foMarker}"${foVerified ? ', data verified' : ', DATA CORRUPT'}`);
    info(`its disk, as the guest found it: sha256 ${foDiskHash.slice(0, 16)}... ${foDiskHash === sourceAtStop ? '= the source disk at the point' : '!= THE SOURCE DISK'}`);
    if (foMarker !== marker || !foVerified || foDiskHash !== sourceAtStop) {
      throw new RefugeError('integrity', `failed-over guest read "${foMarker}" (data verified: ${foVerified}, disk ${foDiskHash}), expected "${marker}" on disk ${sourceAtStop}`);
    }

    step('Committing the failover');
    await operation(api, 'commit', undefined, o.quiet);

    const pointCapturedAt = String(foJob.result.pointCapturedAt);
    const summary: QuickstartSummary = {
      vaultUrl: url,
      vaultDataDir: join(dir, 'vault'),
      replicationId: enabled.id,
      marker,
      sourceDisk: diskPath,
      sourceDiskSha256: { atReady: sourceAtReady, atStop: sourceAtStop },
      guestReadyAt: guestReadyAt.toISOString(),
      testFailover: { pointId: String(tfJob.result.pointId), markerRead: tfMarker, dataVerified: tfVerified, guestDiskSha256: tfDiskHash },
      failover: {
        pointId: String(foJob.result.pointId),
        pointCapturedAt,
        requestedAt: requestedAt.toISOString(),
        machineRunningAt: String(foJob.result.runningAt),
        guestReadyAt: foReadyAt.toISOString(),
        markerRead: foMarker,
        dataVerified: foVerified,
        guestDiskSha256: foDiskHash,
        recoveredDisk: (foJob.result.disks as string[])[0] as string,
      },
      rpoSeconds: (requestedAt.getTime() - Date.parse(pointCapturedAt)) / 1000,
      rtoSeconds: (foReadyAt.getTime() - requestedAt.getTime()) / 1000,
      machineStartSeconds: (Date.parse(String(foJob.result.runningAt)) - requestedAt.getTime()) / 1000,
    };
    await writeFile(join(dir, 'summary.json'), JSON.stringify(summary, null, 2));
    if (!o.quiet) {
      process.stdout.write('\nQuickstart complete: the machine now runs at "recovery".\n');
      process.stdout.write(`  RPO: ${formatSeconds(summary.rpoSeconds)}  (age of recovery point ${summary.failover.pointId} when failover was requested)\n`);
      process.stdout.write(`  RTO: ${formatSeconds(summary.rtoSeconds)}  (failover command -> recovered guest ready; machine process running after ${formatSeconds(summary.machineStartSeconds)})\n`);
      process.stdout.write(`  Proof: both recovered guests booted on disks whose SHA-256 equals the source disk's at the point, read the marker and verified their data.\n`);
      process.stdout.write(`  Summary: ${join(dir, 'summary.json')}; logs: ${logs}\n`);
      if (o.keep) {
        process.stdout.write(`  The vault keeps running at ${url} (REFUGE_URL=${url} REFUGE_CREDENTIALS=${credentialsPath} refuge replication list); stop it with Ctrl-C.\n`);
        process.stdout.write(`\nWeb portal: ${url}/  (user quickstart, password in ${join(dir, 'portal-login.txt')})\n`);
        process.stdout.write(`  Its demo data: vault "demo", sites "primary" and "recovery", replication "${MACHINE}" with its points, jobs and drill, recovery plan "demo-plan".\n`);
        process.stdout.write(`  The browser does not know the vault's own CA: trust ${join(dir, 'vault', 'tls', 'ca.crt')}, or accept the warning once.\n`);
      }
    }
    return summary;
  } finally {
    if (!o.keep) {
      await primaryHost.delete(MACHINE).catch(() => undefined);
      for (const name of [MACHINE, `${MACHINE}-test`]) await recoverySite?.stop(name).catch(() => undefined);
      for (const c of children.reverse()) await stopChild(c);
    } else {
      await Promise.all(children.map((c) => new Promise((r) => c.once('exit', r))));
    }
  }
}

async function operation(api: ApiClient, name: string, point: string | undefined, quiet: boolean): Promise<JobView> {
  const job = await api.request<JobView>('POST', `/vaults/${VAULT}/replications/${MACHINE}/${name}`, point ? { point } : undefined);
  const done = await followJob(api, job.id, { quiet });
  if (done.state !== 'succeeded') throw new RefugeError('failed_precondition', `${name} failed: ${done.error?.message ?? 'unknown'}`);
  return done;
}

function diskHashIn(consoleText: string): string {
  const m = new RegExp(`${GUEST_LINES.diskHash}([0-9a-f]{64})`).exec(consoleText);
  if (!m) throw new RefugeError('failed_precondition', 'the recovered guest printed no disk checksum');
  return m[1] as string;
}

async function until<T>(probe: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new RefugeError('unavailable', `timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(250);
  }
}
