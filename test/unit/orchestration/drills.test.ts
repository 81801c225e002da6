import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { seedPlanMachines } from '../../helpers/plans.js';
import { TEST_DATABASES } from '../../helpers/databases.js';
import { createTestVault, type TestVault } from '../../helpers/test-vault.js';

interface RunView { job: string; outcome: string; rtoSeconds: number | null; cleanedUp: boolean; error: string | null; trigger: string }

/**
 * Drills on a real database and store with the in-memory fabric; probes go to real servers on loopback (the test
 * copy's service stands in as a local HTTP server; the failing probe targets a port nothing listens on).
 */
describe.each(TEST_DATABASES)('drills on %s', (database) => {
  let v: TestVault;
  let server: Server;
  let port: number;
  let closedPort: number;
  beforeEach(async () => {
    v = await createTestVault(database);
    await seedPlanMachines(v, ['db', 'web']);
    server = createServer((_req, res) => res.writeHead(200).end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
  });
  afterEach(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await v.cleanup();
  });

  const runDrill = async (name: string) => {
    const r = await v.call<RunView>('POST', `/api/v1/vaults/demo/drills/${name}/run`);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    return v.engine.waitFor(r.body.job, 60_000);
  };
  const rep = async (name: string) => (await v.call<{ testFailoverState: string; allowedOperations: string[] }>('GET', `/api/v1/vaults/demo/replications/${name}`)).body;

  it('a drill whose probe succeeds records success with its RTO and cleans up; one whose probe fails still cleans up', async () => {
    expect((await v.call('POST', '/api/v1/vaults/demo/drills', { name: 'db-http', replication: 'db', probe: { kind: 'http', url: `http://127.0.0.1:${port}/health`, timeoutSeconds: 5 } })).status).toBe(201);
    expect((await v.call('POST', '/api/v1/vaults/demo/drills', { name: 'db-tcp', replication: 'db', probe: { kind: 'tcp', host: '127.0.0.1', port: closedPort, timeoutSeconds: 2 } })).status).toBe(201);

    const good: JobView = await runDrill('db-http');
    expect(good.state, JSON.stringify(good.error)).toBe('succeeded');
    expect(good.tasks.map((t) => [t.name, t.state])).toEqual([['test-failover', 'succeeded'], ['probe', 'succeeded'], ['cleanup', 'succeeded'], ['record-outcome', 'succeeded']]);
    expect(v.fabric.machines.has('db-test')).toBe(false);
    expect((await rep('db')).testFailoverState).toBe('none');

    const bad = await runDrill('db-tcp');
    expect(bad.state).toBe('failed');
    expect(bad.error?.message).toMatch(/drill of replication 'db' failed: the tcp probe did not succeed after \d+ attempt\(s\): TCP 127\.0\.0\.1:\d+: connect ECONNREFUSED.*; the test copy was cleaned up/);
    expect(v.fabric.machines.has('db-test')).toBe(false);
    expect((await rep('db')).allowedOperations).toEqual(['test-failover', 'planned-failover', 'failover', 'resync', 'repair', 'disable']);

    const okView = (await v.call<{ lastRun: RunView; lastSuccessfulRun: RunView; runs: RunView[] }>('GET', '/api/v1/vaults/demo/drills/db-http')).body;
    expect(okView.lastRun).toMatchObject({ outcome: 'succeeded', cleanedUp: true, error: null, trigger: 'request' });
    expect(okView.lastRun.rtoSeconds).toBeGreaterThan(0);
    const badView = (await v.call<{ lastRun: RunView }>('GET', '/api/v1/vaults/demo/drills/db-tcp')).body;
    expect(badView.lastRun).toMatchObject({ outcome: 'failed', cleanedUp: true, rtoSeconds: null });
    // Per replication: the last drill failed, the last successful one is the HTTP drill's run.
    const status = (await v.call<{ lastRun: RunView; lastSuccessfulRun: RunView }>('GET', '/api/v1/vaults/demo/replications/db/drill-status')).body;
    expect(status.lastRun.job).toBe(bad.id);
    expect(status.lastSuccessfulRun.job).toBe(good.id);
  });

  it('a plan drill fails over every machine, probes, and cleans up; manual actions are skipped', async () => {
    await v.call('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'shop', groups: [{ name: 'a', replications: ['db'], post: [{ name: 'ok', kind: 'manual', target: 'approve' }] }, { name: 'b', replications: ['web'] }] });
    await v.call('POST', '/api/v1/vaults/demo/drills', { name: 'shop-drill', plan: 'shop', probe: { kind: 'command', command: 'test "$REFUGE_MACHINE_MAP" = "db=db-test@recovery/10.0.0.10 web=web-test@recovery/10.0.0.11" && test {machine} = db-test' } });
    const job = await runDrill('shop-drill');
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');
    expect(v.fabric.machines.size).toBe(0);
    const status = (await v.call<{ lastSuccessfulRun: RunView }>('GET', '/api/v1/vaults/demo/recovery-plans/shop/drill-status')).body;
    expect(status.lastSuccessfulRun.job).toBe(job.id);
  });

  it('the scheduler runs a due drill once and moves its next run by the interval', async () => {
    const past = new Date(Date.now() - 1000).toISOString();
    await v.call('POST', '/api/v1/vaults/demo/drills', { name: 'nightly', replication: 'web', intervalSeconds: 86400, firstRunAt: past, probe: { kind: 'tcp', host: '127.0.0.1', port } });
    await v.drills.stop(); // the test drives the scheduler itself
    expect(await v.drills.tick()).toBe(1);
    expect(await v.drills.tick()).toBe(0);
    const d = (await v.call<{ nextRunAt: string; lastRun: RunView }>('GET', '/api/v1/vaults/demo/drills/nightly')).body;
    expect(Date.parse(d.nextRunAt)).toBeGreaterThan(Date.now() + 86000_000);
    expect(d.lastRun.trigger).toBe('schedule');
    const job = await v.engine.waitFor(d.lastRun.job, 60_000);
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');
  });

  it('refuses bad drills with clear errors', async () => {
    const both = await v.call<{ error: { message: string } }>('POST', '/api/v1/vaults/demo/drills', { name: 'x', replication: 'db', plan: 'p', probe: { kind: 'tcp', host: 'h', port: 1 } });
    expect(both.status).toBe(400);
    expect(both.body.error.message).toBe('a drill names exactly one of replication or plan');
    expect((await v.call('POST', '/api/v1/vaults/demo/drills', { name: 'x', replication: 'nope', probe: { kind: 'tcp', host: 'h', port: 1 } })).status).toBe(404);
    const url = await v.call<{ error: { message: string } }>('POST', '/api/v1/vaults/demo/drills', { name: 'x', replication: 'db', probe: { kind: 'http', url: 'ftp://x/' } });
    expect(url.status).toBe(400);
    expect(url.body.error.message).toBe("probe URL 'ftp://x/' is not an http(s) URL");
    expect((await v.call('POST', '/api/v1/vaults/demo/drills', { name: 'x', replication: 'db', intervalSeconds: 5, probe: { kind: 'tcp', host: 'h', port: 1 } })).status).toBe(400);
  });
});
