import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chunkHash } from '../../helpers/chunk-name.js';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { OPERATIONS } from '../../../src/vault/replication-state.js';
import { CHUNK, createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

type Rep = { id: string; state: string; reversed: boolean; sourceSite: string; targetSite: string; allowedOperations: string[]; activeJobId: string | null; failover: Record<string, { pointId: string; disks: string[] }> };
type ErrorBody = { error: { code: string; message: string; allowedOperations?: string[] } };

const DISK = 4 * CHUNK;

/**
 * Every operation of the state machine through the API, on a real database and real stores with an in-memory
 * fabric: each allowed transition runs as a job to its end state, and each refused one answers 409 listing the
 * allowed operations. Points are committed through the replicator's endpoints as an agent would.
 */
describe('operation lifecycle', () => {
  let v: TestVault;
  let dir: string;
  let primaryDisk: string;
  let original: Buffer;

  beforeEach(async () => {
    v = await createTestVault('sqlite');
    dir = await mkdtemp(join(tmpdir(), 'refuge-orch-'));
    primaryDisk = join(dir, 'disk0.raw');
    await seedConfiguration(v, [{ name: 'disk0', sizeBytes: DISK, path: primaryDisk } as { name: string; sizeBytes: number }]);
    ({ disk: original } = await protectWithPoint(v));
    await writeFile(primaryDisk, original);
  });
  afterEach(async () => {
    await v.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const rep = async () => (await v.call<Rep>('GET', '/api/v1/vaults/demo/replications/vm1')).body;
  const start = (op: string, body: unknown = {}) => v.call<JobView & ErrorBody>('POST', `/api/v1/vaults/demo/replications/vm1/${op}`, body);
  const run = async (op: string, body: unknown = {}): Promise<JobView> => {
    const r = await start(op, body);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    return v.engine.waitFor(r.body.id);
  };
  /** Commits `disk` as a point on the replication's latest point (or `parentId`), uploading its changed chunks. */
  const commit = async (disk: Buffer, parentId: string | null, consistency: 'crash' | 'app' = 'crash'): Promise<string> => {
    const { id } = await rep();
    const changes: [number, string | null][] = [];
    for (let i = 0; i < disk.length / CHUNK; i++) {
      const data = disk.subarray(i * CHUNK, (i + 1) * CHUNK);
      const hash = data.every((b) => b === 0) ? null : chunkHash(data);
      if (hash) expect((await v.call('PUT', `/replicator/v1/replications/${id}/chunks/${hash}`, data, { 'content-type': 'application/octet-stream' })).status).toBe(204);
      changes.push([i, hash]);
    }
    const r = await v.call<{ pointId: string }>('POST', `/replicator/v1/replications/${id}/points`, {
      parentId,
      capturedAt: new Date().toISOString(),
      consistency,
      disks: [{ name: 'disk0', sizeBytes: disk.length, changes }],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.pointId;
  };
  const latest = async () => (await v.call<{ items: { id: string }[] }>('GET', '/api/v1/vaults/demo/replications/vm1/points')).body.items[0]?.id ?? null;
  const heartbeat = async (site: string) =>
    (await v.call<{ replication: { mode: string; chunkSize: number; latestPointId: string | null; resyncAfter?: string; cutAfter?: string; heartbeatSoonSeconds?: number; reprotectPending?: { chunkSize: number } } }>('POST', '/api/v1/vaults/demo/agents/vm1/heartbeat', { agentVersion: '0.3.0', site })).body.replication;
  const refused = async (op: string) => {
    const r = await start(op);
    expect(r.status, `${op} should be refused`).toBe(409);
    expect(r.body.error.code).toBe('operation_not_allowed');
    expect(r.body.error.allowedOperations).toEqual((await rep()).allowedOperations);
  };
  const refusesAllBut = async (allowed: string[]) => {
    expect((await rep()).allowedOperations).toEqual(allowed);
    for (const op of OPERATIONS.filter((o) => !allowed.includes(o))) await refused(op);
  };
  const content = (fill: number) => {
    const d = Buffer.from(original);
    d.fill(fill, 4096, 8192); // one 4 KiB block of chunk 0
    return d;
  };

  it('unplanned failover to each point choice, change of point, commit: refused operations answer 409 at every step', async () => {
    await refusesAllBut(['test-failover', 'planned-failover', 'failover', 'resync', 'repair', 'disable']);
    const first = (await latest()) as string;
    const app = await commit(content(1), first, 'app');
    const second = await commit(content(2), app);

    // Choices resolved at request time are checked before anything starts.
    const none = await start('failover', { point: 'latest-multi-machine' });
    expect(none.status).toBe(412);
    expect(none.body.error.message).toContain('no consistency group');
    expect((await start('failover', { point: 'newest' })).status).toBe(400);
    expect((await start('commit', { point: 'latest' })).status).toBe(400);

    const byApp = await run('failover', { point: 'latest-app-consistent' });
    expect(byApp.state).toBe('succeeded');
    expect(byApp.result.pointId).toBe(app);
    expect(v.fabric.machines.get('vm1')?.disk0?.equals(content(1))).toBe(true);
    await refusesAllBut(['change-recovery-point', 'commit']);

    const changed = await run('change-recovery-point', { point: first });
    expect(changed.state, JSON.stringify(changed.error)).toBe('succeeded');
    expect(v.fabric.machines.get('vm1')?.disk0?.equals(original)).toBe(true);
    expect((await rep()).failover.failover?.pointId).toBe(first);
    const back = await run('change-recovery-point', { point: 'latest' });
    expect(back.result.pointId).toBe(second);
    expect(v.fabric.machines.get('vm1')?.disk0?.equals(content(2))).toBe(true);
    // The agent at the failed site is told to stop.
    expect((await heartbeat('primary')).mode).toBe('stop');

    expect((await run('commit')).state).toBe('succeeded');
    await refusesAllBut(['reprotect', 'disable']);
  });

  it('latest-multi-machine picks the newest point its consistency group cut together', async () => {
    expect((await v.call('POST', '/api/v1/vaults/demo/consistency-groups', { name: 'app' })).status).toBe(201);
    expect((await v.call('PATCH', '/api/v1/vaults/demo/replications/vm1', { group: 'app' })).status).toBe(200);
    const first = (await latest()) as string;
    await v.repos.db.updateTable('recoveryPoints').set({ groupCutId: 'cut_1' } as never).where('id', '=', first).execute();
    await commit(content(3), first); // newer, but not cut with the group
    const job = await run('failover', { point: 'latest-multi-machine' });
    expect(job.result.pointId).toBe(first);
    expect(v.fabric.machines.get('vm1')?.disk0?.equals(original)).toBe(true);
  });

  it('planned failover: refused for a source the fabric does not run unless shut down, then boots the final point shipped after the stop', async () => {
    const refusedJob = await run('planned-failover');
    expect(refusedJob.state).toBe('failed');
    expect(refusedJob.error?.message).toContain('not run by the site');
    expect((await rep()).state).toBe('protected');

    const r = await start('planned-failover', { sourceShutDown: true });
    expect(r.status).toBe(202);
    // The heartbeat asks the source agent for a point at once; it still replicates until the final point is in.
    let hb = await heartbeat('primary');
    for (let i = 0; i < 100 && !hb.cutAfter; i++) {
      await new Promise((ok) => setTimeout(ok, 50));
      hb = await heartbeat('primary');
    }
    expect(hb.mode).toBe('replicate');
    expect(hb.cutAfter).toBeDefined();
    const last = content(9);
    const final = await commit(last, hb.latestPointId);
    const job = await v.engine.waitFor(r.body.id);
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');
    expect(job.result.pointId).toBe(final);
    expect(v.fabric.machines.get('vm1')?.disk0?.equals(last)).toBe(true);
    expect((await rep()).state).toBe('failed-over');
  });

  it('re-protect seeds from the former disks so only differences travel, then failback returns every byte home and re-protect runs forward again', async () => {
    expect((await run('failover')).state).toBe('succeeded');
    expect((await run('commit')).state).toBe('succeeded');
    // The recovered machine runs at recovery; its agent registers it there with its disk.
    const failedOver = (await rep()).failover.failover?.disks[0] as string;
    expect((await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'recovery',
      agentVersion: '0.3.0',
      machine: { name: 'vm1', hostname: 'host1', os: 'linux', cpus: 1, memoryMiB: 256, disks: [{ name: 'disk0', sizeBytes: DISK, path: failedOver }], boot: { kind: 'disk' } },
    })).status).toBe(200);

    const r = await start('reprotect');
    expect(r.status).toBe(202);
    let hb = await heartbeat('recovery');
    const waiting = [hb];
    for (let i = 0; i < 200 && hb.mode !== 'replicate'; i++) {
      await new Promise((ok) => setTimeout(ok, 50));
      hb = await heartbeat('recovery');
      waiting.push(hb);
    }
    expect(hb.mode).toBe('replicate');
    expect(hb.latestPointId).not.toBeNull(); // the seed hashed from the disk still at primary
    // While it waits for the seed, the new source is asked to heartbeat again within a second and may hash its disks
    // in the chunks of the store it will ship to (agent/prehash.ts); once it ships, neither.
    for (const w of waiting) expect(w.heartbeatSoonSeconds).toBe(w.mode === 'stop' ? 0.25 : undefined);
    for (const w of waiting) expect(w.reprotectPending).toEqual(w.mode === 'stop' ? { chunkSize: hb.chunkSize, naming: 'leaf16' } : undefined);
    const old = await heartbeat('primary');
    expect(old.mode).toBe('stop'); // the old agent must not ship its stale disk
    expect(old.heartbeatSoonSeconds).toBeUndefined();
    expect(old.reprotectPending).toBeUndefined();
    const during = await rep();
    expect(during).toMatchObject({ state: 'reprotecting', sourceSite: 'recovery', targetSite: 'primary', allowedOperations: ['cancel'] });

    // Only the changed chunk is missing at primary: the rest came from the local seed.
    const now = content(5);
    const hashes = [0, 1, 2, 3].map((i) => now.subarray(i * CHUNK, (i + 1) * CHUNK)).filter((c) => !c.every((b) => b === 0)).map(chunkHash);
    const missing = await v.call<{ missing: string[] }>('POST', `/replicator/v1/replications/${during.id}/chunks/missing`, { hashes });
    expect(missing.body.missing).toEqual([chunkHash(now.subarray(0, CHUNK))]);
    // And the replicator answers block digests so the agent patches one 4 KiB block.
    const blocks = await v.call<{ blockSize: number; chunks: { blocks: string[] }[] }>('POST', `/replicator/v1/replications/${during.id}/chunks/block-hashes`, {
      hashes: [chunkHash(original.subarray(0, CHUNK))],
    });
    expect(blocks.status, JSON.stringify(blocks.body)).toBe(200);
    expect(blocks.body.chunks[0]?.blocks).toHaveLength(CHUNK / 4096);

    await commit(now, hb.latestPointId);
    const job = await v.engine.waitFor(r.body.id);
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');
    expect(job.result.seed).toMatchObject({ mode: 'former-disks' });
    await refusesAllBut(['test-failover', 'failback', 'failover', 'resync', 'repair', 'disable']);
    expect((await rep()).reversed).toBe(true);

    // Failback: stop the machine at recovery, take the final point, boot it at home.
    const fb = await start('failback');
    expect(fb.status).toBe(202);
    hb = await heartbeat('recovery');
    for (let i = 0; i < 100 && !hb.cutAfter; i++) {
      await new Promise((ok) => setTimeout(ok, 50));
      hb = await heartbeat('recovery');
    }
    const last = content(6);
    await commit(last, hb.latestPointId);
    const back = await v.engine.waitFor(fb.body.id);
    expect(back.state, JSON.stringify(back.error)).toBe('succeeded');
    expect(v.fabric.machines.get('vm1')?.disk0?.equals(last)).toBe(true);
    expect(await rep()).toMatchObject({ state: 'failed-over', reversed: true, allowedOperations: ['change-recovery-point', 'commit'] });
    expect((await run('commit')).state).toBe('succeeded');
    await refusesAllBut(['reprotect', 'disable']);

    // Re-protect forward: seeded from the disk still at recovery, the machine replicates from home again.
    const home = (await rep()).failover.failover?.disks[0] as string;
    expect((await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'primary',
      agentVersion: '0.3.0',
      machine: { name: 'vm1', hostname: 'host1', os: 'linux', cpus: 1, memoryMiB: 256, disks: [{ name: 'disk0', sizeBytes: DISK, path: home }], boot: { kind: 'disk' } },
    })).status).toBe(200);
    const forward = await start('reprotect');
    hb = await heartbeat('primary');
    for (let i = 0; i < 200 && hb.mode !== 'replicate'; i++) {
      await new Promise((ok) => setTimeout(ok, 50));
      hb = await heartbeat('primary');
    }
    expect((await heartbeat('recovery')).mode).toBe('stop');
    await commit(content(11), hb.latestPointId);
    const again = await v.engine.waitFor(forward.body.id);
    expect(again.state, JSON.stringify(again.error)).toBe('succeeded');
    expect(again.result.seed).toMatchObject({ mode: 'former-disks' });
    expect(await rep()).toMatchObject({ state: 'protected', reversed: false, sourceSite: 'primary', targetSite: 'recovery' });
    await refusesAllBut(['test-failover', 'planned-failover', 'failover', 'resync', 'repair', 'disable']);
  });

  it('re-protect without the former disks falls back to a full copy', async () => {
    await rm(primaryDisk);
    expect((await run('failover')).state).toBe('succeeded');
    expect((await run('commit')).state).toBe('succeeded');
    const r = await start('reprotect');
    let hb = await heartbeat('recovery');
    for (let i = 0; i < 200 && hb.mode !== 'replicate'; i++) {
      await new Promise((ok) => setTimeout(ok, 50));
      hb = await heartbeat('recovery');
    }
    expect(hb.latestPointId).toBeNull(); // nothing to compare with: the first point is a full copy
    await commit(content(4), null);
    const job = await v.engine.waitFor(r.body.id);
    expect(job.result.seed).toMatchObject({ mode: 'full-copy' });
    expect((await rep()).state).toBe('protected');
  });

  it('resync asks the agent to compare everything; cancel stops a waiting job and returns the replication', async () => {
    const r = await start('resync');
    expect(r.status).toBe(202);
    await refusesAllBut(['cancel']);
    let hb = await heartbeat('primary');
    for (let i = 0; i < 100 && !hb.resyncAfter; i++) {
      await new Promise((ok) => setTimeout(ok, 50));
      hb = await heartbeat('primary');
    }
    expect(hb).toMatchObject({ mode: 'replicate' });
    const cancelled = await start('cancel');
    expect(cancelled.status).toBe(202);
    const done = await v.engine.waitFor(r.body.id);
    expect(done.state).toBe('cancelled');
    expect(await rep()).toMatchObject({ state: 'protected', activeJobId: null });

    const again = await start('resync');
    await new Promise((ok) => setTimeout(ok, 300));
    await commit(content(7), await latest());
    const ok = await v.engine.waitFor(again.body.id);
    expect(ok.state, JSON.stringify(ok.error)).toBe('succeeded');
    expect((await heartbeat('primary')).resyncAfter).toBeUndefined();
  });

  it('a cancelled failover removes the machine it started and leaves the source protected', async () => {
    const w = await createTestVault('sqlite', { holdTasks: ['confirm-running'] });
    try {
      await seedConfiguration(w);
      await protectWithPoint(w);
      const r = await w.call<JobView>('POST', '/api/v1/vaults/demo/replications/vm1/failover', {});
      await w.engine.waitFor(r.body.id, 10_000, (j) => j.tasks[2]?.state === 'running');
      expect(w.fabric.machines.get('vm1')?.state).toBe('running');
      const state = await w.call<Rep>('GET', '/api/v1/vaults/demo/replications/vm1');
      expect(state.body.allowedOperations).toEqual(['cancel']);
      const disk = state.body.failover.failover?.disks[0] as string;
      expect((await w.call('POST', '/api/v1/vaults/demo/replications/vm1/cancel', {})).status).toBe(202);
      const job = await w.engine.waitFor(r.body.id, 10_000);
      expect(job.state).toBe('cancelled');
      expect(w.fabric.machines.has('vm1')).toBe(false);
      expect(existsSync(disk)).toBe(false);
      expect((await w.call<Rep>('GET', '/api/v1/vaults/demo/replications/vm1')).body).toMatchObject({ state: 'protected', activeJobId: null, failover: {} });
    } finally {
      await w.cleanup();
    }
  });

  it('repair drops a point the store lost and resyncs on the newest sound one', async () => {
    const first = (await latest()) as string;
    const second = await commit(content(8), first);
    const store = await v.sites.store((await v.repos.sites.get((await v.repos.vaults.get('demo')).id, 'recovery')));
    await store.deletePoint((await rep()).id, second);
    const r = await start('repair');
    await new Promise((ok) => setTimeout(ok, 300));
    await commit(content(8), first);
    const job = await v.engine.waitFor(r.body.id);
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');
    expect(job.result.droppedPoints).toEqual([{ id: second, problem: 'not in the store' }]);
  });

  it('test failover runs beside replication: points keep coming, the agent keeps replicating', async () => {
    expect((await run('test-failover')).state).toBe('succeeded');
    expect((await heartbeat('primary')).mode).toBe('replicate');
    const before = await latest();
    const next = await commit(content(10), before);
    expect(await latest()).toBe(next);
    expect(v.fabric.machines.get('vm1-test')?.disk0?.equals(original)).toBe(true);
    await refusesAllBut(['test-failover-cleanup']);
  });
});
