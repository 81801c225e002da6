import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RefugeError } from '../../../src/core/errors.js';
import { openDatabase, type VaultDb } from '../../../src/vault/db/connect.js';
import type { JobDefinition } from '../../../src/vault/jobs/definitions.js';
import { JobEngine } from '../../../src/vault/jobs/engine.js';
import { TEST_DATABASES, createTestDatabase, type TestDatabase } from '../../helpers/databases.js';

/** The durable job engine on every real database: order, failure, restart after a crash, cancel, input, restart. */
describe.each(TEST_DATABASES)('job engine on %s', (kind) => {
  let database: TestDatabase;
  let db: VaultDb;
  let engines: JobEngine[];
  const vaultId = 'vault_0mwwd5axj_aaaaaaaa';
  beforeEach(async () => {
    database = await createTestDatabase(kind);
    db = await openDatabase(database.url);
    engines = [];
    await db.insertInto('vaults').values({ id: vaultId, name: 'v', locationSiteId: null, createdAt: new Date().toISOString() }).execute();
  });
  afterEach(async () => {
    for (const e of engines) await e.stop();
    await db.destroy();
    await database.drop();
  });

  const engine = async (defs: JobDefinition<never>[], owner?: string) => {
    const e = new JobEngine(db, defs, { pollMs: 50, ...(owner ? { owner } : {}) });
    engines.push(e);
    await e.start();
    return e;
  };

  const recorder = (log: string[], failAt?: string): JobDefinition<{ n: number }> => ({
    type: 'demo',
    tasks: ['one', 'two', 'three'].map((name) => ({
      name,
      async run(ctx) {
        log.push(`${name}:${ctx.job.params.n}`);
        ctx.progress(0.5, `half of ${name}`);
        if (name === failAt) throw new Error(`${name} broke`);
        ctx.result[name] = true;
      },
    })),
    async onSucceeded() {
      log.push('succeeded');
    },
    async onFailed(_ctx, err) {
      log.push(`failed:${err.code}:${err.message}`);
    },
    async onRestart() {
      log.push('restarted');
    },
  });

  it('runs tasks in order, records results and progress', async () => {
    const log: string[] = [];
    const e = await engine([recorder(log)]);
    const id = await e.create(db, { vaultId, type: 'demo', replicationId: null, params: { n: 7 }, requestedBy: 'user:alice' });
    e.kick();
    const job = await e.waitFor(id, 10_000);
    expect(log).toEqual(['one:7', 'two:7', 'three:7', 'succeeded']);
    expect(job.state).toBe('succeeded');
    expect(job.progress).toBe(1);
    expect(job.attempts).toBe(1);
    expect(job.requestedBy).toBe('user:alice');
    expect(job.result).toEqual({ one: true, two: true, three: true });
    expect(job.tasks.every((t) => t.state === 'succeeded')).toBe(true);
  });

  it('stops at a failing task, marks it, calls the failure handler; restart continues from that task', async () => {
    const log: string[] = [];
    const broken = recorder(log, 'two');
    const e = await engine([broken]);
    const id = await e.create(db, { vaultId, type: 'demo', replicationId: null, params: { n: 1 } });
    e.kick();
    const job = await e.waitFor(id, 10_000);
    expect(log).toEqual(['one:1', 'two:1', 'failed:internal:task failed: two broke']);
    expect(job.state).toBe('failed');
    expect(job.tasks.map((t) => t.state)).toEqual(['succeeded', 'failed', 'pending']);
    expect(job.error?.message).toContain('two broke');
    expect(e.allowed(job)).toEqual(['restart']);

    // The cause is fixed; a restarted job runs from the failed task on.
    broken.tasks[1] = { name: 'two', run: async () => void log.push('two:fixed') };
    const restarted = await e.restart(id);
    expect(['queued', 'running', 'succeeded']).toContain(restarted.state);
    const done = await e.waitFor(id, 10_000);
    expect(done.state).toBe('succeeded');
    expect(done.attempts).toBe(2);
    expect(log.slice(3)).toEqual(['restarted', 'two:fixed', 'three:1', 'succeeded']);
    await expect(e.restart(id)).rejects.toMatchObject({ code: 'operation_not_allowed' });
  });

  it('after a crash, another process takes the job over when its lease expires and continues from the first unfinished task', async () => {
    // A process that is gone ran task one and died during task two: the job is left "running" under its lease.
    const creator = new JobEngine(db, [recorder([])]);
    const id = await creator.create(db, { vaultId, type: 'demo', replicationId: null, params: { n: 3 } });
    await db.updateTable('jobs').set({ state: 'running', leaseOwner: 'dead-process', leaseExpiresAt: new Date(Date.now() + 300).toISOString(), attempts: 1 }).where('id', '=', id).execute();
    await db.updateTable('jobTasks').set({ state: 'succeeded', progress: 1 }).where('jobId', '=', id).where('seq', '=', 0).execute();
    await db.updateTable('jobTasks').set({ state: 'running', progress: 0.4 }).where('jobId', '=', id).where('seq', '=', 1).execute();

    const log: string[] = [];
    const e = await engine([recorder(log)]);
    const job = await e.waitFor(id, 10_000);
    expect(log).toEqual(['two:3', 'three:3', 'succeeded']);
    expect(job.state).toBe('succeeded');
    expect(job.attempts).toBe(2);
    expect(job.tasks.map((t) => t.attempts)).toEqual([0, 1, 1]);
  });

  it('a process restarted under the same owner takes its own jobs back at once', async () => {
    const creator = new JobEngine(db, [recorder([])]);
    const id = await creator.create(db, { vaultId, type: 'demo', replicationId: null, params: { n: 4 } });
    const farFuture = new Date(Date.now() + 3_600_000).toISOString();
    await db.updateTable('jobs').set({ state: 'running', leaseOwner: 'vault-a', leaseExpiresAt: farFuture }).where('id', '=', id).execute();
    const log: string[] = [];
    const e = await engine([recorder(log)], 'vault-a');
    expect((await e.waitFor(id, 10_000)).state).toBe('succeeded');
    expect(log).toEqual(['one:4', 'two:4', 'three:4', 'succeeded']);
  });

  it('cancels a running job: the task sees the abort, the failure handler runs, the job ends cancelled', async () => {
    const log: string[] = [];
    const def: JobDefinition<object> = {
      type: 'slow',
      tasks: [
        { name: 'quick', run: async () => void log.push('quick') },
        {
          name: 'forever',
          run: (ctx) =>
            new Promise((_resolve, reject) => {
              log.push('forever started');
              ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
            }),
        },
        { name: 'never', run: async () => void log.push('never') },
      ],
      async onFailed(_ctx, err) {
        log.push(`onFailed:${err.code}`);
      },
    };
    const e = await engine([def]);
    const id = await e.create(db, { vaultId, type: 'slow', replicationId: null, params: {} });
    e.kick();
    await e.waitFor(id, 10_000, (j) => j.tasks[1]?.state === 'running');
    await e.cancel(id);
    const job = await e.waitFor(id, 10_000);
    expect(job.state).toBe('cancelled');
    expect(job.error?.code).toBe('cancelled');
    expect(job.tasks.map((t) => t.state)).toEqual(['succeeded', 'cancelled', 'pending']);
    expect(log).toEqual(['quick', 'forever started', 'onFailed:cancelled']);
    await expect(e.cancel(id)).rejects.toMatchObject({ code: 'operation_not_allowed' });
  });

  it('waits for input (a manual approval), then resumes with the answer; a waiting job can be cancelled', async () => {
    const seen: unknown[] = [];
    const def: JobDefinition<object> = {
      type: 'approval',
      tasks: [
        {
          name: 'approve',
          async run(ctx) {
            seen.push(ctx.input);
            if (ctx.input === undefined) ctx.waitForInput('approve the failover of plan p1?');
            if (!(ctx.input as { approved: boolean }).approved) throw new RefugeError('failed_precondition', 'not approved');
          },
        },
        { name: 'after', run: async () => void seen.push('after') },
      ],
    };
    const e = await engine([def]);
    const id = await e.create(db, { vaultId, type: 'approval', replicationId: null, params: {} });
    e.kick();
    const waiting = await e.waitFor(id, 10_000, (j) => j.state === 'waiting');
    expect(waiting.tasks[0]).toMatchObject({ state: 'waiting', message: 'approve the failover of plan p1?' });
    expect(e.allowed(waiting)).toEqual(['resume', 'cancel']);
    await e.resume(id, { approved: true, by: 'user:alice' });
    const done = await e.waitFor(id, 10_000);
    expect(done.state).toBe('succeeded');
    expect(done.tasks[0]?.input).toEqual({ approved: true, by: 'user:alice' });
    expect(seen).toEqual([undefined, { approved: true, by: 'user:alice' }, 'after']);
    await expect(e.resume(id, {})).rejects.toMatchObject({ code: 'operation_not_allowed' });

    const second = await e.create(db, { vaultId, type: 'approval', replicationId: null, params: {} });
    e.kick();
    await e.waitFor(second, 10_000, (j) => j.state === 'waiting');
    await e.cancel(second);
    expect((await e.waitFor(second, 10_000)).state).toBe('cancelled');
  });

  it('two engines on one database never run the same task twice', async () => {
    const runs: string[] = [];
    const def: JobDefinition<object> = {
      type: 'count',
      tasks: ['a', 'b'].map((name) => ({
        name,
        async run(ctx) {
          runs.push(`${ctx.job.id}/${name}`);
          await new Promise((r) => setTimeout(r, 5));
        },
      })),
    };
    const [e1, e2] = [await engine([def]), await engine([def])];
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await e1.create(db, { vaultId, type: 'count', replicationId: null, params: {} }));
    e1.kick();
    e2.kick();
    const jobs = [];
    for (const id of ids) jobs.push(await e1.waitFor(id, 20_000));
    expect(jobs.map((j) => j.state)).toEqual(ids.map(() => 'succeeded'));
    expect(jobs.flatMap((j) => j.tasks.map((t) => t.attempts))).toEqual(ids.flatMap(() => [1, 1]));
    expect(new Set(jobs.map((j) => j.ranBy))).toEqual(new Set([e1.owner, e2.owner]));
    expect(runs.length).toBe(40);
    expect(new Set(runs).size).toBe(40);
    // Pages, newest first (ids sort by creation time; within one millisecond by their random part).
    const newestFirst = [...ids].sort().reverse();
    const listed = await e2.list(vaultId, { limit: 5 });
    expect(listed.map((j) => j.id)).toEqual(newestFirst.slice(0, 5));
    const next = await e2.list(vaultId, { limit: 5, before: listed.at(-1)?.id as string });
    expect(next.map((j) => j.id)).toEqual(newestFirst.slice(5, 10));
  });
});
