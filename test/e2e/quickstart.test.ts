import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../src/core/hash-file.js';
import { requestJson, requestText } from '../../src/core/http-client.js';
import { QemuProvider } from '../../src/fabric/qemu/qemu-provider.js';
import type { QuickstartSummary } from '../../src/cli/quickstart/quickstart.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const refuge = (args: string[]) => run(process.execPath, [join(root, 'bin', 'refuge.js'), ...args], { cwd: root, maxBuffer: 16 * 1024 * 1024 });

/**
 * README command 1's main job, end to end with real processes and real qemu VMs: `refuge quickstart` protects a VM
 * whose guest writes a marker, fails it over and commits. Asserts on data: (a) the disk the failed-over guest booted
 * on, and the point restored from the store, equal the source disk's bytes at the point's instant; (b) the
 * failed-over guest read back the marker written before the point and verified its data.
 */
describe('quickstart: protect a VM, test failover, failover, commit', () => {
  let dir: string;
  let stdout: string;
  let summary: QuickstartSummary;

  let quickstart: ChildProcess;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-quickstart-'));
    // As the README says to run it: with --keep, it ends by printing the portal's URL and leaves the vault running.
    // Its own process group, so the Ctrl-C of afterAll reaches the vault it started too.
    quickstart = spawn(process.execPath, [join(root, 'bin', 'refuge.js'), 'quickstart', '--dir', dir, '--keep'], { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    stdout = '';
    let stderr = '';
    quickstart.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      quickstart.stdout?.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (/^ {2}The browser does not know/m.test(stdout)) resolve();
      });
      quickstart.once('exit', (code) => reject(new Error(`quickstart exited (${code}) before printing the portal URL:\n${stdout}\n${stderr}`)));
    });
    summary = JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as QuickstartSummary;
  });
  afterAll(async () => {
    if (quickstart?.pid && quickstart.exitCode === null) {
      const exited = new Promise((r) => quickstart.once('exit', r));
      process.kill(-quickstart.pid, 'SIGINT');
      await exited;
    }
    // --keep left the failed-over machine running (recovered machines outlive the vault): stop it.
    await new QemuProvider({ workDir: join(dir, 'vault', 'sites', 'recovery', 'machines') }).delete('demo-vm').catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('registers its agent the real way: a one-time key redeemed for a client certificate', async () => {
    expect(stdout).toContain('agent registered with a one-time key');
    const cert = new X509Certificate(await readFile(join(dir, 'agent', 'identity', 'client.crt'), 'utf8'));
    expect(cert.subject).toContain('CN=machine:demo-vm');
    expect(cert.checkIssued(new X509Certificate(await readFile(join(dir, 'vault', 'tls', 'ca.crt'), 'utf8')))).toBe(true);
  });

  it('ends by printing the web portal URL, which serves the portal and its demo data to the printed login', async () => {
    const url = /^Web portal: (https:\/\/\S+)\/ {2}\(user quickstart, password in (\S+)\)$/m.exec(stdout);
    expect(url).not.toBeNull();
    const [, base, loginFile] = url as RegExpExecArray;
    const ca = await readFile(join(dir, 'vault', 'tls', 'ca.crt'), 'utf8');
    expect(await requestText(`${base}/`, { connection: { ca } })).toContain('<div id="root"></div>');
    const password = /^password (\S+)$/m.exec(await readFile(loginFile as string, 'utf8'))?.[1];
    const session = await requestJson<{ token: string }>('POST', `${base}/api/v1/auth/login`, { connection: { ca }, body: { user: 'quickstart', password } });
    const get = <T>(path: string) => requestJson<T>('GET', `${base}/api/v1/vaults/demo${path}`, { connection: { ca, token: session.token } });
    expect((await get<{ items: { name: string; state: string }[] }>('/replications')).items).toMatchObject([{ name: 'demo-vm', state: 'failover-committed' }]);
    expect((await get<{ items: { name: string }[] }>('/recovery-plans')).items.map((p) => p.name)).toEqual(['demo-plan']);
    expect((await get<{ items: { type: string }[] }>('/jobs')).items.map((j) => j.type)).toEqual(['commit', 'failover', 'test-failover-cleanup', 'test-failover']);
  });

  it('prints every step and ends with the measured RPO and RTO', () => {
    for (let n = 1; n <= 12; n++) expect(stdout).toContain(`[${n}/12]`);
    expect(stdout).toMatch(/RPO: [\d.]+ (ms|s)/);
    expect(stdout).toMatch(/RTO: [\d.]+ (ms|s)/);
    expect(summary.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(summary.rtoSeconds).toBeGreaterThan(0);
  });

  it('(a) the failed-over disk holds exactly the source disk\'s bytes at the recovery point', async () => {
    // The guest stopped writing (and synced) before the point; the source disk did not change until the primary stopped.
    expect(summary.sourceDiskSha256.atStop).toBe(summary.sourceDiskSha256.atReady);
    expect(Date.parse(summary.failover.pointCapturedAt)).toBeGreaterThan(Date.parse(summary.guestReadyAt));
    // What the failed-over guest found on its disk at boot, before mounting it:
    expect(summary.failover.guestDiskSha256).toBe(summary.sourceDiskSha256.atStop);
    expect(summary.testFailover.guestDiskSha256).toBe(summary.sourceDiskSha256.atReady);
    // And the point restored again from the store, byte for byte against the source disk file:
    const restored = join(dir, 'restored.raw');
    await refuge([
      'store', 'restore', '--path', join(summary.vaultDataDir, 'sites', 'recovery', 'store'),
      '--replication', summary.replicationId, '--point', summary.failover.pointId, '--disk', 'disk0', '--out', restored,
    ]);
    expect(await sha256File(restored)).toBe(summary.sourceDiskSha256.atStop);
    const [a, b] = await Promise.all([readFile(restored), readFile(summary.sourceDisk)]);
    expect(a.equals(b)).toBe(true);
  });

  it('(b) the recovered guests booted and read back the marker written before the point', () => {
    expect(summary.failover.markerRead).toBe(summary.marker);
    expect(summary.failover.dataVerified).toBe(true);
    expect(summary.testFailover.markerRead).toBe(summary.marker);
    expect(summary.testFailover.dataVerified).toBe(true);
  });

  it('leaves the replication failover-committed with its points kept', async () => {
    const points = await refuge(['store', 'points', '--json', '--path', join(summary.vaultDataDir, 'sites', 'recovery', 'store'), '--replication', summary.replicationId]);
    const ids = (JSON.parse(points.stdout) as { items: { id: string }[] }).items.map((p) => p.id);
    expect(ids).toContain(summary.failover.pointId);
    expect(ids).toContain(summary.testFailover.pointId);
  });
});
