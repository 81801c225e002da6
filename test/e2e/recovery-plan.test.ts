import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestJson, requestText } from '../../src/core/http-client.js';
import { GUEST_CMDLINE, GUEST_LINES, ensureDemoGuest, waitForConsole } from '../../src/fabric/demo-guest.js';
import { QemuProvider } from '../../src/fabric/qemu/qemu-provider.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/store/chunks.js';
import { chunkHash } from '../helpers/chunk-name.js';
import type { JobView } from '../../src/vault/jobs/definitions.js';
import { startWebhookReceiver } from '../helpers/receivers.js';
import { initTestVault, startVaultProcess, type VaultProcess } from '../helpers/vault-process.js';

const MACHINES = ['plan-db', 'plan-app', 'plan-web'] as const;
const root = join(import.meta.dirname, '..', '..');
const DISK_BYTES = 16 * 1024 * 1024;

/**
 * Must show 2: a three-VM recovery plan against a real `refuge vault` process running real qemu VMs. Each machine's
 * guest boots at the primary host and writes its own marker and checksummed data; its disk is shipped to the vault's
 * replicator as a recovery point (as a scan-mode agent would). The plan's test failover runs three ordered groups
 * with a script, a webhook and a manual approval; the job waits until it is approved through the API. Then every
 * recovered guest booted and read back its marker, and the plan's cleanup removes the copies.
 */
describe('recovery plan with three real VMs: ordered groups, script, webhook, manual approval', () => {
  let dir: string;
  let vault: VaultProcess;
  let hook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  const markers = new Map<string, string>();
  let recovery: QemuProvider;
  let primary: QemuProvider;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-plan-e2e-'));
    hook = await startWebhookReceiver();
    const guest = await ensureDemoGuest();
    // The primary host: each VM writes its marker on first boot, syncs and says ready; then it is stopped.
    primary = new QemuProvider({ workDir: join(dir, 'primary-host') });
    await Promise.all(MACHINES.map(async (name) => {
      const disk = join(dir, `${name}.raw`);
      await writeFile(disk, '');
      await truncate(disk, DISK_BYTES);
      markers.set(name, `${name}-${Date.now().toString(36)}`);
      await primary.start({ name, cpus: 1, memoryMiB: 256, disks: [{ path: disk, format: 'raw' }], boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: `${GUEST_CMDLINE} refuge.marker=${markers.get(name)} refuge.data_mib=1` } });
    }));
    await Promise.all(MACHINES.map(async (name) => {
      await waitForConsole(() => primary.console(name), new RegExp(`${GUEST_LINES.markerWritten}${markers.get(name)}`), 240_000, `primary ${name}`);
      await waitForConsole(() => primary.console(name), new RegExp(GUEST_LINES.ready), 60_000, `primary ${name}`);
      await primary.delete(name);
    }));

    const init = await initTestVault(undefined, join(dir, 'vault'));
    vault = await startVaultProcess(init);
    recovery = new QemuProvider({ workDir: join(dir, 'vault', 'sites', 'recovery', 'machines') });
    await vault.api('POST', '/vaults', { name: 'demo' });
    await vault.api('POST', '/vaults/demo/sites', { name: 'primary' });
    await vault.api('POST', '/vaults/demo/sites', { name: 'recovery' });
    await vault.api('PATCH', '/vaults/demo', { location: 'recovery' });
    await vault.api('POST', '/vaults/demo/policies', { name: 'default' });
    for (const name of MACHINES) {
      await vault.api('POST', '/vaults/demo/agents/register', {
        site: 'primary',
        agentVersion: '0.1.0',
        machine: { name, hostname: name, os: 'linux', cpus: 1, memoryMiB: 256, disks: [{ name: 'disk0', sizeBytes: DISK_BYTES }], boot: { kind: 'kernel', kernel: guest.kernel, initrd: guest.initrd, cmdline: GUEST_CMDLINE } },
      });
      const rep = await vault.api<{ id: string }>('POST', '/vaults/demo/replications', { machine: name, policy: 'default', targetSite: 'recovery' });
      const disk = await readFile(join(dir, `${name}.raw`));
      const changes: [number, string][] = [];
      for (let c = 0; c < disk.length / DEFAULT_CHUNK_SIZE; c++) {
        const data = disk.subarray(c * DEFAULT_CHUNK_SIZE, (c + 1) * DEFAULT_CHUNK_SIZE);
        if (data.every((b) => b === 0)) continue;
        const hash = chunkHash(data);
        await requestJson('PUT', `${vault.url}/replicator/v1/replications/${rep.id}/chunks/${hash}`, { connection: vault.connection, bytes: data });
        changes.push([c, hash]);
      }
      await requestJson('POST', `${vault.url}/replicator/v1/replications/${rep.id}/points`, {
        connection: vault.connection,
        body: { parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: disk.length, changes }] },
      });
    }
    // The plan, created through the CLI from a JSON file as an operator would.
    await writeFile(join(dir, 'shop.json'), JSON.stringify({
      groups: [
        { name: 'data', replications: ['plan-db'], pre: [{ name: 'context', kind: 'script', target: `env | grep ^REFUGE_ | sort > ${join(dir, 'script-env.txt')}; date +%s%3N > ${join(dir, 'script-at.txt')}` }] },
        { name: 'apps', replications: ['plan-app'], pre: [{ name: 'notify', kind: 'webhook', target: hook.url }], post: [{ name: 'smoke-test', kind: 'manual', target: 'check the app tier, then approve' }] },
        { name: 'front', replications: ['plan-web'], post: [{ name: 'announce', kind: 'script', target: `date +%s%3N > ${join(dir, 'last-at.txt')}` }] },
      ],
    }));
    await cli(['plan', 'create', 'shop', '--file', join(dir, 'shop.json')]);
  });

  afterAll(async () => {
    for (const name of MACHINES) {
      await primary?.delete(name).catch(() => undefined);
      await recovery?.delete(`${name}-test`).catch(() => undefined);
    }
    await vault?.stop();
    await hook?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The `refuge` command as the owner, with --json. */
  const cli = async <T>(args: string[]): Promise<T> => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(root, 'bin', 'refuge.js'), '--url', vault.url, '--credentials', join(dir, 'vault', 'credentials', 'owner.json'), '--vault', 'demo', '--json', ...args]);
    return JSON.parse(stdout) as T;
  };
  const machineState = async (name: string) => (await vault.api<{ state: string }>('GET', `/vaults/demo/sites/recovery/machines/${name}`)).state;
  const waitJob = async (id: string, until: (j: JobView) => boolean, what: string) => {
    const deadline = Date.now() + 300_000;
    for (;;) {
      const j = await vault.api<JobView>('GET', `/vaults/demo/jobs/${id}`);
      if (until(j)) return j;
      if (Date.now() > deadline) throw new Error(`job ${id} never reached ${what}: ${JSON.stringify(j)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  };

  it('runs the groups in order, waits for the approval, and the recovered guests read back their markers', async () => {
    // The dry-run (through the CLI) shows the order and that nothing blocks, and starts nothing.
    const dry = await cli<{ wouldRun: boolean; order: { name: string; machines: { replication: string }[] }[] }>(['plan', 'dry-run', 'shop', 'test-failover']);
    expect(dry.wouldRun).toBe(true);
    expect(dry.order.map((g) => [g.name, g.machines.map((m) => m.replication)])).toEqual([['data', ['plan-db']], ['apps', ['plan-app']], ['front', ['plan-web']]]);
    expect((await vault.api<{ items: unknown[] }>('GET', '/vaults/demo/jobs')).items).toEqual([]);

    const started = await vault.api<JobView>('POST', '/vaults/demo/recovery-plans/shop/test-failover', { point: 'latest' });
    const waiting = await waitJob(started.id, (j) => j.state === 'waiting' || j.state === 'failed', 'waiting');
    expect(waiting.state, JSON.stringify(waiting.error)).toBe('waiting');
    expect(waiting.tasks.find((t) => t.state === 'waiting')?.name).toBe('group-2-post-smoke-test');
    // While it waits, nothing after the approval has run: group 3's machine does not exist, its script did not run.
    expect(await machineState('plan-db-test')).toBe('running');
    expect(await machineState('plan-app-test')).toBe('running');
    await new Promise((r) => setTimeout(r, 1500));
    expect(await machineState('plan-web-test')).toBe('absent');
    await expect(readFile(join(dir, 'last-at.txt'))).rejects.toThrow();
    expect((await vault.api<JobView>('GET', `/vaults/demo/jobs/${started.id}`)).state).toBe('waiting');

    const approvedAt = Date.now();
    await vault.api('POST', `/vaults/demo/jobs/${started.id}/resume`, { approved: true, comment: 'app tier answers' });
    const done = await waitJob(started.id, (j) => j.state === 'succeeded' || j.state === 'failed', 'the end');
    expect(done.state, JSON.stringify(done.error)).toBe('succeeded');

    // Order, from the job's task timestamps: each task started after the previous one ended.
    expect(done.tasks.map((t) => t.name)).toEqual(['group-1-pre-context', 'group-1-machines', 'group-2-pre-notify', 'group-2-machines', 'group-2-post-smoke-test', 'group-3-machines', 'group-3-post-announce']);
    for (let i = 1; i < done.tasks.length; i++) expect(Date.parse(done.tasks[i]?.startedAt as string)).toBeGreaterThanOrEqual(Date.parse(done.tasks[i - 1]?.endedAt as string));
    // Group 3 and its post script ran only after the approval.
    expect(Date.parse(done.tasks[5]?.startedAt as string)).toBeGreaterThanOrEqual(approvedAt);
    expect(Number(await readFile(join(dir, 'last-at.txt'), 'utf8'))).toBeGreaterThanOrEqual(approvedAt);
    expect(Number(await readFile(join(dir, 'script-at.txt'), 'utf8'))).toBeLessThanOrEqual(Date.parse(done.tasks[1]?.startedAt as string));

    // The script saw its context.
    const env = await readFile(join(dir, 'script-env.txt'), 'utf8');
    for (const line of ['REFUGE_PLAN=shop', 'REFUGE_OPERATION=test-failover', 'REFUGE_FAILOVER_TYPE=test', 'REFUGE_DIRECTION=primary-to-recovery', 'REFUGE_GROUP=data', 'REFUGE_GROUP_INDEX=1', 'REFUGE_SITE=recovery', `REFUGE_JOB_ID=${started.id}`,
      'REFUGE_MACHINE_MAP=plan-db=plan-db-test@recovery/ plan-app=plan-app-test@recovery/ plan-web=plan-web-test@recovery/']) {
      expect(env.split('\n')).toContain(line);
    }
    // The webhook received its JSON.
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]?.body).toMatchObject({
      plan: 'shop', operation: 'test-failover', failoverType: 'test', direction: 'primary-to-recovery',
      group: { index: 2, name: 'apps', replications: ['plan-app'] }, action: { name: 'notify', kind: 'webhook', phase: 'pre' },
      machines: MACHINES.map((m) => ({ source: m, recovered: `${m}-test`, recoverySite: 'recovery' })),
    });
    expect(hook.received[0]?.headers['x-refuge-action-id']).toBe(`${started.id}:2:pre:notify`);

    // Every recovered guest booted from its point and read back its own marker, its data verified.
    for (const name of MACHINES) {
      const text = () => requestText(`${vault.url}/api/v1/vaults/demo/sites/recovery/machines/${name}-test/console`, { connection: vault.connection });
      const read = (await waitForConsole(text, new RegExp(`${GUEST_LINES.markerRead}(\\S+)`), 240_000, `recovered ${name}`))[1];
      expect(read).toBe(markers.get(name));
      await waitForConsole(text, new RegExp(GUEST_LINES.dataVerified), 60_000, `recovered ${name}`);
    }

    // Cleanup through the CLI, which follows the plan's job to its end.
    const cleaned = await cli<JobView>(['plan', 'run', 'shop', 'test-failover-cleanup']);
    expect(cleaned.state, JSON.stringify(cleaned.error)).toBe('succeeded');
    for (const name of MACHINES) expect(await machineState(`${name}-test`)).toBe('absent');
  });

  it('drills of a real VM: a probe that sees the guest verify its data succeeds with its RTO; a failing probe still cleans up', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    // The probe runs inside the recovery site: here it reads the test copy's serial console for the guest's own check.
    const consoleOf = join(dir, 'vault', 'sites', 'recovery', 'machines', '{machine}', 'console.log');
    await vault.api('POST', '/vaults/demo/drills', { name: 'db-boots', replication: 'plan-db', probe: { kind: 'command', command: `grep -q '${GUEST_LINES.dataVerified}' ${consoleOf}`, timeoutSeconds: 240 } });
    await vault.api('POST', '/vaults/demo/drills', { name: 'db-port', replication: 'plan-db', probe: { kind: 'tcp', host: '127.0.0.1', port: closedPort, timeoutSeconds: 3 } });
    type Run = { job: string; outcome: string; rtoSeconds: number | null; cleanedUp: boolean; error: string | null };

    const good = await cli<Run>(['drill', 'run', 'db-boots']);
    expect(good, JSON.stringify(good)).toMatchObject({ outcome: 'succeeded', cleanedUp: true, error: null });
    expect(good.rtoSeconds).toBeGreaterThan(0);
    expect(await machineState('plan-db-test')).toBe('absent');

    const bad = await vault.api<Run>('POST', '/vaults/demo/drills/db-port/run');
    const badJob = await waitJob(bad.job, (j) => j.state === 'succeeded' || j.state === 'failed', 'the end');
    expect(badJob.state).toBe('failed');
    expect(badJob.tasks.map((t) => [t.name, t.state])).toEqual([['test-failover', 'succeeded'], ['probe', 'succeeded'], ['cleanup', 'succeeded'], ['record-outcome', 'failed']]);
    expect(await machineState('plan-db-test')).toBe('absent');
    const status = await vault.api<{ lastRun: Run; lastSuccessfulRun: Run }>('GET', '/vaults/demo/replications/plan-db/drill-status');
    expect(status.lastRun).toMatchObject({ job: bad.job, outcome: 'failed', cleanedUp: true, rtoSeconds: null });
    expect(status.lastRun.error).toContain('probe failed: TCP 127.0.0.1');
    expect(status.lastSuccessfulRun).toMatchObject({ job: good.job, outcome: 'succeeded', rtoSeconds: good.rtoSeconds });
  });
});
