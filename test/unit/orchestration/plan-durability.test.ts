import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { assembleVault } from '../../../src/api/server.js';
import { initVault } from '../../../src/api/vault-init.js';
import { silentLogger } from '../../../src/core/log.js';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { createTestDatabase, type TestDatabase } from '../../helpers/databases.js';
import { FakeFabric } from '../../helpers/fake-fabric.js';
import { seedPlanMachines } from '../../helpers/plans.js';
import { testCertificate, type TestVault } from '../../helpers/test-vault.js';

/**
 * Plans and drills survive a vault restart: a plan job waiting for approval is approved through the next vault
 * process and continues where it stopped; a drill that fell due while the vault was down runs when it is back (and
 * leaves alone a test failover it did not start).
 * Real SQLite and stores; the fabric is in memory and shared by both processes (recovered machines outlive the vault).
 */
describe('plans and drills across a vault restart', () => {
  let dataDir: string;
  let db: TestDatabase;
  let token: string;
  const fabric = new FakeFabric();
  const open = async (drillPollMs: number) => {
    const vault = await assembleVault({ dataDir, databaseUrl: db.url, log: silentLogger, fabricFor: () => fabric, monitorIntervalMs: 0, drillPollMs, instanceId: 'same-vault' });
    const call = async <T = Record<string, unknown>>(method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) => {
      const r = await vault.app.inject({ method: method as 'GET', url, ...(payload === undefined ? {} : { payload: payload as string }), headers: { authorization: `Bearer ${token}`, ...headers } });
      return { status: r.statusCode, body: (r.body ? r.json<T>() : undefined) as T };
    };
    return { ...vault, call };
  };
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'refuge-plan-restart-'));
    db = await createTestDatabase('sqlite');
    token = (await initVault({ dataDir, databaseUrl: db.url, owner: 'owner', password: 'owner-password-1', certificate: testCertificate() })).credentials.token;
  });
  afterEach(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('a waiting plan is approved after a restart and continues; a drill that fell due during the outage runs on start without touching the plan\'s copies', async () => {
    const a = await open(3600_000);
    await seedPlanMachines(a as unknown as TestVault, ['db', 'app', 'web']);
    await a.call('POST', '/api/v1/vaults/demo/recovery-plans', {
      name: 'shop',
      groups: [{ name: 'one', replications: ['db'] }, { name: 'two', replications: ['app'], post: [{ name: 'ok', kind: 'manual', target: 'approve' }] }, { name: 'three', replications: ['web'] }],
    });
    const job = (await a.call<JobView>('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover', {})).body;
    await a.engine.waitFor(job.id, 60_000, (j) => j.state === 'waiting');
    const drill = await a.call('POST', '/api/v1/vaults/demo/drills', { name: 'nightly', replication: 'db', intervalSeconds: 86400, firstRunAt: new Date(Date.now() - 60_000).toISOString(), probe: { kind: 'command', command: 'true' } });
    expect(drill.status).toBe(201);
    await a.close();

    const b = await open(100);
    try {
      expect((await b.call('POST', `/api/v1/vaults/demo/jobs/${job.id}/resume`, { approved: true })).status).toBe(202);
      const done = await b.engine.waitFor(job.id, 60_000);
      expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
      // Groups one and two ran once, before the restart; only the approval and group three ran after it.
      expect(done.tasks.map((t) => [t.name, t.attempts])).toEqual([['group-1-machines', 1], ['group-2-machines', 1], ['group-2-post-ok', 2], ['group-3-machines', 1]]);
      expect([...fabric.machines.keys()].sort()).toEqual(['app-test', 'db-test', 'web-test']);
      expect((await b.engine.waitFor((await b.call<JobView>('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover-cleanup', {})).body.id, 60_000)).state).toBe('succeeded');

      // The drill fell due while the vault was down and ran as soon as it was back, while the plan held 'db' in
      // a test failover: it failed without touching the plan's copy (db-test survived above).
      type Run = { job: string; trigger: string; outcome: string; error: string | null };
      const runs = async () => (await b.call<{ runs: Run[]; nextRunAt: string }>('GET', '/api/v1/vaults/demo/drills/nightly')).body;
      const waitRuns = async (n: number) => {
        for (let i = 0; i < 600; i++) {
          const r = await runs();
          if (r.runs.length >= n && r.runs.every((x) => x.outcome !== 'running')) return r;
          await new Promise((res) => setTimeout(res, 100));
        }
        throw new Error(`drill never reached ${n} finished runs: ${JSON.stringify(await runs())}`);
      };
      const first = await waitRuns(1);
      expect(first.runs[0]).toMatchObject({ trigger: 'schedule', outcome: 'failed' });
      expect(first.runs[0]?.error).toContain("test failover could not start: test-failover is not allowed on replication 'db'");
      expect(Date.parse(first.nextRunAt)).toBeGreaterThan(Date.now() + 86000_000);
      // Due again (moved by hand): now it runs and succeeds, once.
      await b.call('PATCH', '/api/v1/vaults/demo/drills/nightly', { nextRunAt: new Date(Date.now() - 1000).toISOString() });
      const second = await waitRuns(2);
      expect(second.runs.map((r) => [r.trigger, r.outcome])).toEqual([['schedule', 'succeeded'], ['schedule', 'failed']]);
      expect(fabric.machines.size).toBe(0);
    } finally {
      await b.close();
    }
  });
});
