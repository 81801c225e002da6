import { readFile, rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/vault/jobs/definitions.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { initTestVault, seedReplications, startVaultProcess, type VaultProcess } from '../helpers/vault-process.js';

/**
 * Jobs survive the vault: real `refuge vault` processes killed with SIGKILL in the middle of a job. A restarted
 * vault continues the job from its first unfinished task; on PostgreSQL a second vault takes over the jobs of a
 * dead one when their leases expire, and no finished task ever runs twice.
 */
describe('durable jobs across vault processes', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
  });
  const started = (v: VaultProcess) => {
    cleanups.push(() => v.stop());
    return v;
  };
  const waitJob = async (v: VaultProcess, id: string, until: (j: JobView) => boolean, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const j = await v.api<JobView>('GET', `/vaults/demo/jobs/${id}`);
      if (until(j)) return j;
      if (Date.now() > deadline) throw new Error(`job ${id} is ${j.state}: ${JSON.stringify(j.tasks)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  it('kill -9 of the vault mid test failover: the restarted vault continues from the last completed task and boots the point', async () => {
    const { dataDir, credentials } = await initTestVault();
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    // The first life holds the job at start-machine (fault injection), after restore-disks has finished.
    const first = started(await startVaultProcess({ dataDir, credentials, env: { REFUGE_TEST_HOLD_TASKS: 'start-machine' } }));
    const { disks } = await seedReplications(first, ['vm1']);
    const job = await first.api<JobView>('POST', '/vaults/demo/replications/vm1/test-failover', { point: 'latest' });
    const held = await waitJob(first, job.id, (j) => j.tasks[1]?.state === 'running');
    expect(held.tasks.map((t) => t.state)).toEqual(['succeeded', 'running', 'pending', 'pending']);
    await first.kill('SIGKILL');

    const second = started(await startVaultProcess({ dataDir, credentials }));
    const done = await waitJob(second, job.id, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.state));
    expect(done.state).toBe('succeeded');
    expect(done.attempts).toBe(2);
    expect(done.tasks.map((t) => [t.name, t.state, t.attempts])).toEqual([
      ['restore-disks', 'succeeded', 1], // finished before the kill: not run again
      ['start-machine', 'succeeded', 2], // interrupted by the kill: run again
      ['confirm-running', 'succeeded', 1],
      ['hydrate-disks', 'succeeded', 1], // instant recovery's background copy (nothing to do for restore-first)
    ]);
    expect(done.tasks[0]?.endedAt).toBe(held.tasks[0]?.endedAt);
    // The machine the fabric runs boots on exactly the point's bytes.
    const recovered = await readFile((done.result.disks as string[])[0] as string);
    expect(recovered.equals(disks.get('vm1') as Buffer)).toBe(true);
    const machine = await second.api<{ state: string }>('GET', '/vaults/demo/sites/recovery/machines/vm1-test');
    expect(machine.state).toBe('running');
    const cleanup = await second.api<JobView>('POST', '/vaults/demo/replications/vm1/test-failover-cleanup');
    expect((await waitJob(second, cleanup.id, (j) => j.state !== 'queued' && j.state !== 'running')).state).toBe('succeeded');
  });

  it('two vault processes on one PostgreSQL share jobs; when one is killed the other finishes its jobs; no finished task runs twice', async () => {
    const database: TestDatabase = await createTestDatabase('postgres');
    cleanups.push(() => database.drop());
    const a = await initTestVault(database.url);
    const b = await initTestVault(database.url);
    cleanups.push(() => rm(a.dataDir, { recursive: true, force: true }), () => rm(b.dataDir, { recursive: true, force: true }));
    const env = { REFUGE_JOB_LEASE_SECONDS: '3' };
    // Vault A holds every job it claims at its second task; vault B runs everything.
    const vaultA = started(await startVaultProcess({ ...a, databaseUrl: database.url, env: { ...env, REFUGE_TEST_HOLD_TASKS: 'delete-replication' } }));
    const vaultB = started(await startVaultProcess({ ...b, databaseUrl: database.url, env }));
    const names = Array.from({ length: 8 }, (_, i) => `vm${i}`);
    await seedReplications(vaultA, names);
    const jobs: string[] = [];
    for (const [i, name] of names.entries()) {
      const via = i % 2 === 0 ? vaultA : vaultB;
      jobs.push((await via.api<JobView>('POST', `/vaults/demo/replications/${name}/disable`)).id);
    }
    // Wait until every job has either finished on B or is held by A at its second task.
    const ownerA = (await readFile(`${a.dataDir}/instance-id`, 'utf8')).trim();
    const ownerB = (await readFile(`${b.dataDir}/instance-id`, 'utf8')).trim();
    const before = await Promise.all(jobs.map((id) => waitJob(vaultB, id, (j) => j.state === 'succeeded' || (j.ranBy === ownerA && j.tasks[1]?.state === 'running'))));
    const heldByA = before.filter((j) => j.state === 'running').map((j) => j.id);
    expect(heldByA.length).toBeGreaterThan(0);
    expect(before.some((j) => j.state === 'succeeded' && j.ranBy === ownerB)).toBe(true);

    await vaultA.kill('SIGKILL');
    const after = await Promise.all(jobs.map((id) => waitJob(vaultB, id, (j) => j.state === 'succeeded' || j.state === 'failed')));
    expect(after.map((j) => j.state)).toEqual(jobs.map(() => 'succeeded'));
    for (const j of after) {
      const wasHeld = heldByA.includes(j.id);
      expect(j.ranBy).toBe(wasHeld ? ownerB : j.ranBy);
      // delete-points finished once, wherever it ran; only the task interrupted by the kill ran a second time.
      expect(j.tasks.map((t) => t.attempts)).toEqual(wasHeld ? [1, 2] : [1, 1]);
      expect(j.attempts).toBe(wasHeld ? 2 : 1);
    }
    const reps = await vaultB.api<{ items: unknown[] }>('GET', '/vaults/demo/replications');
    expect(reps.items).toEqual([]);
  });
});
