import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type VaultDb } from '../../../src/vault/db/connect.js';
import type { JobDefinition } from '../../../src/vault/jobs/definitions.js';
import { JobEngine } from '../../../src/vault/jobs/engine.js';

describe('job engine', () => {
  let dir: string;
  let db: VaultDb;
  let vaultId: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-jobs-'));
    db = await openDatabase(`sqlite:${join(dir, 'vault.db')}`);
    vaultId = 'vault_0mwwd5axj_aaaaaaaa';
    await db.insertInto('vaults').values({ id: vaultId, name: 'v', locationSiteId: null, createdAt: new Date().toISOString() }).execute();
  });
  afterEach(async () => {
    await db.destroy();
    await rm(dir, { recursive: true, force: true });
  });

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
      log.push(`failed:${err.message}`);
    },
  });

  it('runs tasks in order, records results and progress', async () => {
    const log: string[] = [];
    const engine = new JobEngine(db, [recorder(log)]);
    await engine.start();
    const id = await engine.create(db, { vaultId, type: 'demo', replicationId: null, params: { n: 7 } });
    engine.kick();
    const job = await engine.waitFor(id, 10_000);
    await engine.stop();
    expect(log).toEqual(['one:7', 'two:7', 'three:7', 'succeeded']);
    expect(job.state).toBe('succeeded');
    expect(job.progress).toBe(1);
    expect(job.result).toEqual({ one: true, two: true, three: true });
    expect(job.tasks.every((t) => t.state === 'succeeded')).toBe(true);
  });

  it('stops at a failing task, marks it, and calls the failure handler', async () => {
    const log: string[] = [];
    const engine = new JobEngine(db, [recorder(log, 'two')]);
    await engine.start();
    const id = await engine.create(db, { vaultId, type: 'demo', replicationId: null, params: { n: 1 } });
    engine.kick();
    const job = await engine.waitFor(id, 10_000);
    await engine.stop();
    expect(log).toEqual(['one:1', 'two:1', 'failed:task failed: two broke']);
    expect(job.state).toBe('failed');
    expect(job.tasks.map((t) => t.state)).toEqual(['succeeded', 'failed', 'pending']);
    expect(job.error?.message).toContain('two broke');
  });

  it('after a restart, continues a job from its first unfinished task', async () => {
    // A previous process ran task one and died during task two: the job is left "running".
    const first = new JobEngine(db, [recorder([])]);
    const id = await first.create(db, { vaultId, type: 'demo', replicationId: null, params: { n: 3 } });
    await db.updateTable('jobs').set({ state: 'running' }).where('id', '=', id).execute();
    await db.updateTable('jobTasks').set({ state: 'succeeded', progress: 1 }).where('jobId', '=', id).where('seq', '=', 0).execute();
    await db.updateTable('jobTasks').set({ state: 'running', progress: 0.4 }).where('jobId', '=', id).where('seq', '=', 1).execute();

    const log: string[] = [];
    const second = new JobEngine(db, [recorder(log)]);
    await second.start();
    const job = await second.waitFor(id, 10_000);
    await second.stop();
    expect(log).toEqual(['two:3', 'three:3', 'succeeded']);
    expect(job.state).toBe('succeeded');
  });
});
