import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import { silentLogger } from '../../../src/core/log.js';
import { startStandaloneReplicator } from '../../../src/replicator/standalone.js';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { verifyStore } from '../../../src/store/verify.js';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';
import { figure } from '../../helpers/figures.js';

const DISK = 16 * MiB;

interface AlertView { kind: string; severity: string; state: string; message: string; subject: string }

/**
 * Reliability R3: the recovery site's replica store lives on a small filesystem (a tmpfs of 6 MiB, mounted and
 * removed by the test) and an agent seeds 16 MiB of incompressible data into it. The vault raises a critical
 * `replica-store-full` alert saying why; no point is committed half (the store verifies clean throughout); when the
 * filesystem grows (space freed), replication resumes by itself, the point restores byte for byte and the alert is
 * resolved.
 */
describe('R3 replica store full', () => {
  let f: AgentFixture;
  let mountPoint: string;
  let mounted = false;

  beforeEach(async () => {
    f = await startAgentFixture('rproving-full-');
    mountPoint = join(f.dir, 'vault', 'sites', 'recovery', 'store');
    await mkdir(mountPoint, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m,mode=0700', 'proving-store-full', mountPoint]);
    mounted = true;
  });
  afterEach(async () => {
    await f.stopAgent();
    await f.server.close();
    if (mounted) execFileSync('umount', ['-l', mountPoint]);
    mounted = false;
    await f.close().catch(() => undefined);
  });

  const alerts = async () => (await f.api<{ items: AlertView[] }>('GET', '/vaults/demo/alerts?kind=replica-store-full')).items;

  it('raises a critical alert with the reason, commits nothing half, and recovers when space is freed', async () => {
    const diskPath = join(f.dir, 'disk0.raw');
    await writeFile(diskPath, randomBytes(DISK));
    f.startAgent(new ScanCapture({ disks: [{ name: 'disk0', path: diskPath }] }), [{ name: 'disk0', sizeBytes: DISK }]);
    const rep = await f.enable();
    const fullAt = Date.now();

    await waitFor(async () => (await alerts()).some((a) => a.state === 'active'), 60_000, 'a replica-store-full alert');
    const [alert] = (await alerts()).filter((a) => a.state === 'active') as [AlertView];
    expect(alert).toMatchObject({ severity: 'critical', subject: 'site recovery' });
    expect(alert.message).toMatch(/replica store of site 'recovery' is out of space/);
    expect(alert.message).toMatch(/ENOSPC|no space/i);
    const alertSeconds = (Date.now() - fullAt) / 1000;

    // While full: no point, and whatever the store holds is sound.
    expect(await f.points()).toEqual([]);
    const whileFull = await verifyStore(await ReplicaStore.open(new FilesystemBackend(mountPoint)));
    expect(whileFull.problems).toEqual([]);
    expect(whileFull.points).toBe(0);

    // Space is freed: the filesystem grows, and the agent's next attempt goes through without any help.
    execFileSync('mount', ['-o', 'remount,size=64m', mountPoint]);
    const freedAt = Date.now();
    const point = await f.pointAfter(new Date(0), 90_000);
    const recoverySeconds = (Date.now() - freedAt) / 1000;
    expect((await f.restore(rep, point.id)).equals(await readFile(diskPath))).toBe(true);
    await waitFor(async () => (await alerts()).every((a) => a.state === 'resolved'), 20_000, 'the alert resolved');
    const after = await verifyStore(await ReplicaStore.open(new FilesystemBackend(mountPoint)));
    expect(after.problems).toEqual([]);
    figure('R3', { storeBytes: 6 * MiB, diskBytes: DISK, alertSeconds, corruptPoints: after.problems.length, recoverySeconds });
  });
  it('the same through a standalone replicator: its report carries the refusal, the vault alerts and resolves', async () => {
    const id = await f.registerReplicator('recovery');
    const standalone = await startStandaloneReplicator({ vaultUrl: f.server.url, vault: 'demo', site: 'recovery', tls: { connection: id.connection, issuingCa: id.issuingCa }, log: silentLogger });
    try {
      const diskPath = join(f.dir, 'disk0.raw');
      await writeFile(diskPath, randomBytes(DISK));
      f.startAgent(new ScanCapture({ disks: [{ name: 'disk0', path: diskPath }] }), [{ name: 'disk0', sizeBytes: DISK }]);
      const rep = await f.enable();
      await waitFor(async () => (await alerts()).some((a) => a.state === 'active'), 60_000, 'a replica-store-full alert');
      const [alert] = (await alerts()).filter((a) => a.state === 'active') as [AlertView];
      expect(alert).toMatchObject({ severity: 'critical', subject: 'site recovery' });
      expect(alert.message).toMatch(/replica store of site 'recovery' is out of space; replication of 'vm1' is stalled: .*(ENOSPC|no space)/i);
      expect(standalone.replicator.counters.get(rep)?.bytesReceived).toBeGreaterThan(0); // the standalone one hit it
      expect(f.server.replicator.counters.get(rep)).toBeUndefined();

      execFileSync('mount', ['-o', 'remount,size=64m', mountPoint]);
      const point = await f.pointAfter(new Date(0), 90_000);
      expect((await f.restore(rep, point.id)).equals(await readFile(diskPath))).toBe(true);
      await waitFor(async () => (await alerts()).every((a) => a.state === 'resolved'), 20_000, 'the alert resolved');
    } finally {
      await standalone.close();
    }
  });
});
