import { afterEach, describe, expect, it } from 'vitest';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { TEST_DATABASES } from '../../helpers/databases.js';
import { createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

type Job = JobView & { allowedOperations: string[] };
type Rep = { state: string; testFailoverState: string; allowedOperations: string[]; activeJobId: string | null };

/** Job operations through the API on real operation jobs: cancel a running test failover, restart a failed failover. */
describe.each(TEST_DATABASES)('job operations on %s', (database) => {
  let v: TestVault;
  afterEach(async () => v.cleanup());
  const rep = async () => (await v.call<Rep>('GET', '/api/v1/vaults/demo/replications/vm1')).body;

  it('cancels a running test failover: the job ends cancelled and the replication allows only the cleanup', async () => {
    v = await createTestVault(database, { holdTasks: ['start-machine'] });
    await seedConfiguration(v);
    await protectWithPoint(v);
    const started = await v.call<Job>('POST', '/api/v1/vaults/demo/replications/vm1/test-failover', {});
    await v.engine.waitFor(started.body.id, 10_000, (j) => j.tasks[1]?.state === 'running');
    const operator = await v.tokenFor('operator');
    const cancel = await v.call<Job>('POST', `/api/v1/vaults/demo/jobs/${started.body.id}/cancel`, undefined, { authorization: `Bearer ${operator}` });
    expect(cancel.status).toBe(202);
    const done = await v.engine.waitFor(started.body.id, 10_000);
    expect(done.state).toBe('cancelled');
    expect(done.tasks.map((t) => t.state)).toEqual(['succeeded', 'cancelled', 'pending', 'pending']);
    expect(await rep()).toMatchObject({ testFailoverState: 'running', activeJobId: null, allowedOperations: ['test-failover-cleanup'] });
    const again = await v.call<{ error: { code: string; allowedOperations: string[] } }>('POST', `/api/v1/vaults/demo/jobs/${started.body.id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.error.allowedOperations).toEqual(['restart']);
    // ...but the replication moved on (its test copy must be cleaned up first), so a restart is refused.
    expect((await v.call('POST', `/api/v1/vaults/demo/jobs/${started.body.id}/restart`)).status).toBe(409);
  });

  it('restarts a failed failover from the failed task once the cause is fixed', async () => {
    v = await createTestVault(database);
    await seedConfiguration(v);
    const { disk } = await protectWithPoint(v);
    v.fabric.failStart = true;
    const first = await v.call<Job>('POST', '/api/v1/vaults/demo/replications/vm1/failover', {});
    const failed = await v.engine.waitFor(first.body.id);
    expect(failed.state).toBe('failed');
    expect((await v.call<Job>('GET', `/api/v1/vaults/demo/jobs/${first.body.id}`)).body.allowedOperations).toEqual(['restart']);
    expect((await rep()).state).toBe('protected');

    v.fabric.failStart = false;
    const restarted = await v.call<Job>('POST', `/api/v1/vaults/demo/jobs/${first.body.id}/restart`);
    expect(restarted.status).toBe(202);
    const done = await v.engine.waitFor(first.body.id);
    expect(done.state).toBe('succeeded');
    expect(done.tasks.map((t) => [t.name, t.attempts])).toEqual([['restore-disks', 1], ['start-machine', 2], ['confirm-running', 1], ['hydrate-disks', 1]]);
    expect(v.fabric.machines.get('vm1')?.disk0?.equals(disk)).toBe(true);
    expect(await rep()).toMatchObject({ state: 'failed-over', allowedOperations: ['change-recovery-point', 'commit'] });
    const twice = await v.call<{ error: { code: string } }>('POST', `/api/v1/vaults/demo/jobs/${first.body.id}/restart`);
    expect(twice.status).toBe(409);
  });
});
