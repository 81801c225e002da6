import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { seedPlanMachines } from '../../helpers/plans.js';
import { startWebhookReceiver } from '../../helpers/receivers.js';
import { TEST_DATABASES } from '../../helpers/databases.js';
import { createTestVault, type TestVault } from '../../helpers/test-vault.js';

type Rep = { state: string; testFailoverState: string };

/**
 * Recovery plans on a real database, real stores, real scripts and a real webhook receiver, with the in-memory
 * fabric (the qemu provider runs the same plan against real VMs in test/e2e/recovery-plan.test.ts): groups in
 * order, machines in parallel through their own operation jobs, actions with their context, approval through the API.
 */
describe.each(TEST_DATABASES)('recovery plans on %s', (database) => {
  let v: TestVault;
  let dir: string;
  let hook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  beforeEach(async () => {
    v = await createTestVault(database);
    dir = await mkdtemp(join(tmpdir(), 'refuge-plan-test-'));
    hook = await startWebhookReceiver();
    await seedPlanMachines(v, ['db', 'app', 'web']);
  });
  afterEach(async () => {
    await hook.close();
    await v.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const createPlan = async () => {
    const r = await v.call('POST', '/api/v1/vaults/demo/recovery-plans', {
      name: 'shop',
      groups: [
        { name: 'data', replications: ['db'], pre: [{ name: 'env', kind: 'script', target: `env | grep ^REFUGE_ > ${join(dir, 'env-pre.txt')}; echo "$REFUGE_CONTEXT_JSON" > ${join(dir, 'context.json')}` }] },
        { name: 'apps', replications: ['app'], pre: [{ name: 'notify', kind: 'webhook', target: hook.url }], post: [{ name: 'check', kind: 'manual', target: 'check the app answers, then approve' }] },
        { name: 'front', replications: ['web'], post: [{ name: 'done', kind: 'script', target: `date +%s%N > ${join(dir, 'done.txt')}` }] },
      ],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  };
  const rep = async (name: string) => (await v.call<Rep>('GET', `/api/v1/vaults/demo/replications/${name}`)).body;
  const start = async (op: string, body?: unknown) => {
    const r = await v.call<JobView>('POST', `/api/v1/vaults/demo/recovery-plans/shop/${op}`, body);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    return r.body;
  };

  const planAllows = async () => (await v.call<{ allowedOperations: string[] }>('GET', '/api/v1/vaults/demo/recovery-plans/shop')).body.allowedOperations;

  it('test failover runs groups in order with their actions, waits for approval, and cleanup removes every copy', async () => {
    await createPlan();
    // What every machine allows (a cleanup with nothing to clean up is not offered).
    expect(await planAllows()).toEqual(['test-failover', 'planned-failover', 'failover']);
    const job = await start('test-failover', { point: 'latest' });
    expect(job.type).toBe('plan-test-failover');
    expect(job.tasks.map((t) => t.name)).toEqual(['group-1-pre-env', 'group-1-machines', 'group-2-pre-notify', 'group-2-machines', 'group-2-post-check', 'group-3-machines', 'group-3-post-done']);

    const waiting = await v.engine.waitFor(job.id, 60_000, (j) => j.state === 'waiting' || j.state === 'failed');
    expect(waiting.state, JSON.stringify(waiting.error)).toBe('waiting');
    expect(waiting.tasks.find((t) => t.state === 'waiting')?.message).toBe('check: check the app answers, then approve');
    // Nothing after the approval ran: group 3's machine is not started and its script did not run.
    expect(v.fabric.machines.has('db-test')).toBe(true);
    expect(v.fabric.machines.has('app-test')).toBe(true);
    expect(v.fabric.machines.has('web-test')).toBe(false);
    await expect(readFile(join(dir, 'done.txt'))).rejects.toThrow();
    const listed = await v.call<{ items: { id: string; waitingFor: string }[] }>('GET', '/api/v1/vaults/demo/recovery-plans/shop/jobs');
    expect(listed.body.items[0]).toMatchObject({ id: job.id, waitingFor: 'check: check the app answers, then approve' });
    // A second run of a busy plan is refused, and not offered.
    expect((await v.call('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover', {})).status).toBe(409);
    expect(await planAllows()).toEqual([]);

    const approve = await v.call('POST', `/api/v1/vaults/demo/jobs/${job.id}/resume`, { approved: true, comment: 'app answers' });
    expect(approve.status).toBe(202);
    const done = await v.engine.waitFor(job.id, 60_000);
    expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
    expect(v.fabric.machines.has('web-test')).toBe(true);

    // Order: every task started after the previous one ended.
    for (let i = 1; i < done.tasks.length; i++) {
      expect(Date.parse(done.tasks[i]?.startedAt as string)).toBeGreaterThanOrEqual(Date.parse(done.tasks[i - 1]?.endedAt as string));
    }
    // The script saw its context.
    const env = Object.fromEntries((await readFile(join(dir, 'env-pre.txt'), 'utf8')).trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(env).toMatchObject({ REFUGE_PLAN: 'shop', REFUGE_OPERATION: 'test-failover', REFUGE_FAILOVER_TYPE: 'test', REFUGE_DIRECTION: 'primary-to-recovery', REFUGE_GROUP: 'data', REFUGE_GROUP_INDEX: '1', REFUGE_PHASE: 'pre', REFUGE_SITE: 'recovery', REFUGE_JOB_ID: job.id });
    expect(env.REFUGE_MACHINE_MAP).toBe('db=db-test@recovery/10.0.0.10 app=app-test@recovery/10.0.0.11 web=web-test@recovery/10.0.0.12');
    const context = JSON.parse(await readFile(join(dir, 'context.json'), 'utf8')) as { machines: { source: string; recovered: string; addresses: { network: string }[] }[] };
    expect(context.machines.map((m) => [m.source, m.recovered, m.addresses[0]?.network])).toEqual([['db', 'db-test', 'bubble'], ['app', 'app-test', 'bubble'], ['web', 'web-test', 'bubble']]);
    // The webhook received its JSON.
    expect(hook.received).toHaveLength(1);
    expect(hook.received[0]?.body).toMatchObject({ plan: 'shop', operation: 'test-failover', group: { index: 2, name: 'apps', replications: ['app'] }, action: { name: 'notify', kind: 'webhook', phase: 'pre' } });
    expect(done.result.actions).toMatchObject({ 'group-2-post-check': { outcome: 'approved', detail: { by: 'user:owner', comment: 'app answers' } } });
    for (const name of ['db', 'app', 'web']) expect((await rep(name)).testFailoverState).toBe('running');
    expect(await planAllows()).toEqual(['test-failover-cleanup']);

    const cleanup = await v.engine.waitFor((await start('test-failover-cleanup')).id, 60_000);
    expect(cleanup.state, JSON.stringify(cleanup.error)).toBe('succeeded');
    expect(cleanup.tasks.map((t) => t.name)).toEqual(['group-1-machines', 'group-2-machines', 'group-3-machines']);
    expect([...v.fabric.machines.keys()]).toEqual([]);
    for (const name of ['db', 'app', 'web']) expect((await rep(name)).testFailoverState).toBe('none');
  });

  it('a rejected approval fails the plan before the next group; a restart asks again', async () => {
    await createPlan();
    const job = await start('test-failover');
    await v.engine.waitFor(job.id, 60_000, (j) => j.state === 'waiting');
    await v.call('POST', `/api/v1/vaults/demo/jobs/${job.id}/resume`, { approved: false, comment: 'app is broken' });
    const failed = await v.engine.waitFor(job.id, 60_000);
    expect(failed.state).toBe('failed');
    expect(failed.error?.message).toContain("manual action 'check' of group 'apps' was rejected by user:owner: app is broken");
    expect(v.fabric.machines.has('web-test')).toBe(false);
    expect((await v.call('POST', `/api/v1/vaults/demo/jobs/${job.id}/restart`)).status).toBe(202);
    const again = await v.engine.waitFor(job.id, 60_000, (j) => j.state === 'waiting' || j.state === 'failed');
    expect(again.state).toBe('waiting');
    // The machines of the first groups were not asked twice.
    expect(again.tasks.filter((t) => t.name.endsWith('machines') && t.attempts > 1)).toEqual([]);
  });

  it('failover then commit run group by group; primary-site scripts are skipped on an unplanned failover', async () => {
    const r = await v.call('POST', '/api/v1/vaults/demo/recovery-plans', {
      name: 'shop',
      groups: [
        { name: 'one', replications: ['db', 'app'] },
        { name: 'two', replications: ['web'], pre: [{ name: 'primary-side', kind: 'script', site: 'primary', target: 'exit 3' }] },
      ],
    });
    expect(r.status).toBe(201);
    const fo = await v.engine.waitFor((await start('failover', { point: 'latest' })).id, 60_000);
    // On an unplanned failover the primary may be gone: its actions are skipped, not failed.
    expect(fo.state, JSON.stringify(fo.error)).toBe('succeeded');
    expect(fo.result.actions).toMatchObject({ 'group-2-pre-primary-side': { outcome: 'skipped' } });
    for (const name of ['db', 'app', 'web']) expect((await rep(name)).state).toBe('failed-over');
    const commit = await v.engine.waitFor((await start('commit')).id, 60_000);
    expect(commit.state).toBe('succeeded');
    for (const name of ['db', 'app', 'web']) expect((await rep(name)).state).toBe('failover-committed');
  });

  it('a machine that fails stops the plan at its group; a restart once the cause is fixed asks that machine again', async () => {
    await v.call('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'shop', groups: [{ name: 'one', replications: ['db', 'app'] }, { name: 'two', replications: ['web'] }] });
    v.fabric.failStart = true;
    const job = await v.engine.waitFor((await start('failover')).id, 60_000);
    expect(job.state).toBe('failed');
    expect(job.error?.message).toMatch(/^group 1 'one' of plan 'shop': failover failed for 'db' \(.*fake fabric refuses to start db.*\), 'app' \(/);
    for (const name of ['db', 'app', 'web']) expect((await rep(name)).state).toBe('protected');
    v.fabric.failStart = false;
    expect((await v.call('POST', `/api/v1/vaults/demo/jobs/${job.id}/restart`)).status).toBe(202);
    const done = await v.engine.waitFor(job.id, 60_000);
    expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.tasks.map((t) => [t.name, t.attempts])).toEqual([['group-1-machines', 2], ['group-2-machines', 1]]);
    for (const name of ['db', 'app', 'web']) expect((await rep(name)).state).toBe('failed-over');
  });

  it('a failing script fails the plan with its exit status and stderr, before its group runs', async () => {
    await v.call('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'shop', groups: [{ name: 'one', replications: ['db'], pre: [{ name: 'bad', kind: 'script', target: 'echo no database >&2; exit 3' }] }] });
    const job = await v.engine.waitFor((await start('test-failover')).id, 60_000);
    expect(job.state).toBe('failed');
    expect(job.error?.message).toBe("script action 'bad' of group 'one' exited with 3: no database");
    expect(v.fabric.machines.size).toBe(0);
  });

  it('refuses operations not allowed now, and bad input, with clear errors', async () => {
    await createPlan();
    const reprotect = await v.call<{ error: { code: string; message: string } }>('POST', '/api/v1/vaults/demo/recovery-plans/shop/reprotect', {});
    expect(reprotect.status).toBe(409);
    const point = await v.call<{ error: { message: string } }>('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover', { point: 'pt_0000000000_aaaaaaaa' });
    expect(point.status).toBe(400);
    expect(point.body.error.message).toContain('/body/point'); // a plan names its point by choice, not by one machine's point id
    expect((await v.call('POST', '/api/v1/vaults/demo/recovery-plans/nope/test-failover', {})).status).toBe(404);
    const cleanup = await v.call<{ error: { message: string } }>('POST', '/api/v1/vaults/demo/recovery-plans/shop/commit', {});
    expect(cleanup.status).toBe(409);
    expect(cleanup.body.error.message).toContain("commit of plan 'shop' is not allowed now: 'db' is protected; 'app' is protected; 'web' is protected");
  });

  it('dry-run shows order, capacity needed against free, addresses and what blocks, changing nothing', async () => {
    await createPlan();
    const dry = await v.call<{
      wouldRun: boolean;
      order: { name: string; pre: { name: string }[]; machines: { replication: string; allowed: boolean; recovered: { recovered: string; addresses: { ipv4: string; network: string }[] } }[]; post: { name: string }[] }[];
      capacity: { needed: { vcpus: number; memoryMiB: number }; free: { vcpus: number } };
      blocking: { what: string; message: string }[];
    }>('POST', '/api/v1/vaults/demo/recovery-plans/shop/dry-run', { operation: 'failover' });
    expect(dry.status, JSON.stringify(dry.body)).toBe(200);
    expect(dry.body.wouldRun).toBe(true);
    expect(dry.body.order.map((g) => [g.name, g.pre.map((a) => a.name), g.machines.map((m) => m.replication), g.post.map((a) => a.name)])).toEqual([
      ['data', ['env'], ['db'], []],
      ['apps', ['notify'], ['app'], ['check']],
      ['front', [], ['web'], ['done']],
    ]);
    expect(dry.body.order[0]?.machines[0]?.recovered).toMatchObject({ recovered: 'db', addresses: [{ ipv4: '10.0.0.10', network: 'lan' }] });
    expect(dry.body.capacity.needed).toMatchObject({ vcpus: 3, memoryMiB: 768 });
    expect(dry.body.capacity.free.vcpus).toBe(16);
    expect((await v.call<{ items: unknown[] }>('GET', '/api/v1/vaults/demo/jobs')).body.items).toEqual([]);
    for (const name of ['db', 'app', 'web']) expect((await rep(name)).state).toBe('protected');

    // Shrink the site: the capacity check now blocks, and the dry-run says so.
    await v.call('PATCH', '/api/v1/vaults/demo/sites/recovery', { capacity: { vcpus: 2, memoryMiB: 4096, diskGiB: 100 } });
    const blocked = await v.call<{ wouldRun: boolean; blocking: { what: string; message: string }[] }>('POST', '/api/v1/vaults/demo/recovery-plans/shop/dry-run', { operation: 'test-failover' });
    expect(blocked.body.wouldRun).toBe(false);
    expect(blocked.body.blocking).toContainEqual({ what: 'readiness: target-capacity', message: "site 'recovery' needs 3 vCPUs, has 2 free" });
    // And a real run is refused by the same readiness gate.
    expect((await v.call('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover', {})).status).toBe(412);
  });
});

describe('recovery plans: cancel', () => {
  it('cancelling a plan cancels the machine jobs it waits for; the machines return to where they were', async () => {
    // Every machine's test failover holds at confirm-running until its job is aborted (test fault injection).
    const v = await createTestVault('sqlite', { holdTasks: ['confirm-running'] });
    try {
      await seedPlanMachines(v, ['db', 'app']);
      await v.call('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'shop', groups: [{ name: 'one', replications: ['db', 'app'] }] });
      const job = (await v.call<JobView>('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover', {})).body;
      const held = async () => (await v.call<{ items: JobView[] }>('GET', '/api/v1/vaults/demo/jobs?type=test-failover')).body.items;
      for (let i = 0; i < 300 && (await held()).filter((j) => j.tasks.some((t) => t.name === 'confirm-running' && t.state === 'running')).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
      expect((await v.call('POST', `/api/v1/vaults/demo/jobs/${job.id}/cancel`)).status).toBe(202);
      expect((await v.engine.waitFor(job.id, 60_000)).state).toBe('cancelled');
      for (const j of await held()) expect((await v.engine.waitFor(j.id, 60_000)).state).toBe('cancelled');
      for (const name of ['db', 'app']) {
        const rep = (await v.call<{ activeJobId: string | null; allowedOperations: string[] }>('GET', `/api/v1/vaults/demo/replications/${name}`)).body;
        expect(rep.activeJobId).toBeNull();
        expect(rep.allowedOperations).toEqual(['test-failover-cleanup']);
      }
    } finally {
      await v.cleanup();
    }
  });
});

describe('recovery plans: webhook retries', () => {
  it('retries a webhook answering 503 and succeeds; a 400 fails the plan at once', async () => {
    const v = await createTestVault();
    const seen: number[] = [];
    const answers = [503, 200, 400];
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const code = answers[seen.length] ?? 400;
        seen.push(code);
        res.writeHead(code, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    try {
      await seedPlanMachines(v, ['db']);
      await v.call('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'shop', groups: [{ name: 'one', replications: ['db'], pre: [{ name: 'hook', kind: 'webhook', target: url }] }] });
      const ok = await v.engine.waitFor((await v.call<JobView>('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover', {})).body.id, 60_000);
      expect(ok.state, JSON.stringify(ok.error)).toBe('succeeded');
      expect(seen).toEqual([503, 200]);
      expect(ok.result.actions).toMatchObject({ 'group-1-pre-hook': { outcome: 'done', detail: { attempts: 2 } } });
      await v.engine.waitFor((await v.call<JobView>('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover-cleanup', {})).body.id, 60_000);
      const bad = await v.engine.waitFor((await v.call<JobView>('POST', '/api/v1/vaults/demo/recovery-plans/shop/test-failover', {})).body.id, 60_000);
      expect(bad.state).toBe('failed');
      expect(seen).toEqual([503, 200, 400]);
      expect(bad.error?.message).toMatch(/^webhook action 'hook' of group 'one' failed after 1 attempt\(s\): /);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      await v.cleanup();
    }
  });
});
