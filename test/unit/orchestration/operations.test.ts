import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { TEST_DATABASES } from '../../helpers/databases.js';
import { CHUNK, createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

type Rep = { state: string; testFailoverState: string; allowedOperations: string[]; activeJobId: string | null; failover: Record<string, { disks: string[] }> };

/**
 * Operations through the API as jobs, on a real database and store with an in-memory fabric: each moves the
 * replication through the state machine, and what the fabric is given to boot is the recovery point's bytes.
 */
describe.each(TEST_DATABASES)('operations on %s', (database) => {
  let v: TestVault;
  let disk: Buffer;
  beforeEach(async () => {
    v = await createTestVault(database);
    await seedConfiguration(v);
    ({ disk } = await protectWithPoint(v));
  });
  afterEach(async () => v.cleanup());

  const rep = async () => (await v.call<Rep>('GET', '/api/v1/vaults/demo/replications/vm1')).body;
  const run = async (op: string, body?: unknown): Promise<JobView> => {
    const r = await v.call<JobView>('POST', `/api/v1/vaults/demo/replications/vm1/${op}`, body);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    return v.engine.waitFor(r.body.id);
  };

  it('test failover boots the point\'s bytes, allows only cleanup, and cleanup removes everything', async () => {
    expect((await rep()).allowedOperations).toEqual(['test-failover', 'planned-failover', 'failover', 'resync', 'repair', 'disable']);
    const job = await run('test-failover', { point: 'latest' });
    expect(job.state).toBe('succeeded');
    expect(job.tasks.map((t) => [t.name, t.state])).toEqual([
      ['restore-disks', 'succeeded'],
      ['start-machine', 'succeeded'],
      ['confirm-running', 'succeeded'],
      ['hydrate-disks', 'succeeded'],
    ]);
    const booted = v.fabric.machines.get('vm1-test');
    expect(booted?.disk0?.equals(disk)).toBe(true);
    const during = await rep();
    expect(during.testFailoverState).toBe('running');
    expect(during.allowedOperations).toEqual(['test-failover-cleanup']);
    const diskPath = during.failover.test?.disks[0] as string;
    expect(existsSync(diskPath)).toBe(true);

    const failover = await v.call<{ error: { allowedOperations: string[] } }>('POST', '/api/v1/vaults/demo/replications/vm1/failover', {});
    expect(failover.status).toBe(409);
    expect(failover.body.error.allowedOperations).toEqual(['test-failover-cleanup']);

    expect((await run('test-failover-cleanup')).state).toBe('succeeded');
    expect(v.fabric.machines.has('vm1-test')).toBe(false);
    expect(existsSync(diskPath)).toBe(false);
    const after = await rep();
    expect(after.testFailoverState).toBe('none');
    expect(after.failover).toEqual({});
  });

  it('failover then commit: failed-over boots the point, commit makes it final', async () => {
    const job = await run('failover');
    expect(job.state).toBe('succeeded');
    expect(v.fabric.machines.get('vm1')?.disk0?.equals(disk)).toBe(true);
    expect(job.result.pointId).toBeDefined();
    let r = await rep();
    expect(r.state).toBe('failed-over');
    expect(r.allowedOperations).toEqual(['change-recovery-point', 'commit']);
    expect((await run('commit')).state).toBe('succeeded');
    r = await rep();
    expect(r.state).toBe('failover-committed');
    expect(r.allowedOperations).toEqual(['reprotect', 'disable']);
  });

  it('a failover that cannot start the machine fails cleanly and returns the replication to protected', async () => {
    v.fabric.failStart = true;
    const job = await run('failover');
    expect(job.state).toBe('failed');
    expect(job.error?.message).toContain('fake fabric refuses');
    expect(job.tasks.find((t) => t.state === 'failed')?.name).toBe('start-machine');
    const r = await rep();
    expect(r.state).toBe('protected');
    expect(r.activeJobId).toBeNull();
  });

  it('of two concurrent conflicting operations exactly one wins', async () => {
    const [a, b] = await Promise.all([
      v.call<JobView>('POST', '/api/v1/vaults/demo/replications/vm1/failover', {}),
      v.call<JobView>('POST', '/api/v1/vaults/demo/replications/vm1/test-failover', {}),
    ]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).toEqual([202, 409]);
    const winner = a.status === 202 ? a.body : b.body;
    expect((await v.engine.waitFor(winner.id)).state).toBe('succeeded');
    const jobs = await v.call<{ items: JobView[] }>('GET', '/api/v1/vaults/demo/jobs');
    expect(jobs.body.items).toHaveLength(1);
  });

  it('disable deletes the points and the replication', async () => {
    expect((await run('disable')).state).toBe('succeeded');
    expect((await v.call('GET', '/api/v1/vaults/demo/replications/vm1')).status).toBe(404);
  });

  it('lists points and shows a point with its disks', async () => {
    const points = await v.call<{ items: { id: string }[] }>('GET', '/api/v1/vaults/demo/replications/vm1/points');
    expect(points.body.items).toHaveLength(1);
    const id = points.body.items[0]?.id as string;
    const point = await v.call<{ disks: { name: string; storedChunks: number }[] }>('GET', `/api/v1/vaults/demo/replications/vm1/points/${id}`);
    expect(point.body.disks).toEqual([{ name: 'disk0', sizeBytes: disk.length, chunkSize: CHUNK, storedChunks: 2 }]);
  });
});
