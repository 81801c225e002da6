import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../src/core/hash-file.js';
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

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-quickstart-'));
    ({ stdout } = await refuge(['quickstart', '--dir', dir]));
    summary = JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8')) as QuickstartSummary;
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('registers its agent the real way: a one-time key redeemed for a client certificate', async () => {
    expect(stdout).toContain('agent registered with a one-time key');
    const cert = new X509Certificate(await readFile(join(dir, 'agent', 'identity', 'client.crt'), 'utf8'));
    expect(cert.subject).toContain('CN=machine:demo-vm');
    expect(cert.checkIssued(new X509Certificate(await readFile(join(dir, 'vault', 'tls', 'ca.crt'), 'utf8')))).toBe(true);
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
