import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type VaultDb } from '../../../src/vault/db/connect.js';
import { GroupCutCoordinator } from '../../../src/vault/group-cuts.js';
import { EventRepository } from '../../../src/vault/monitoring/events.js';
import { createRepositories, type VaultRepositories } from '../../../src/vault/repositories/index.js';
import type { ConsistencyGroup } from '../../../src/vault/model.js';
import { TEST_DATABASES, createTestDatabase, type TestDatabase } from '../../helpers/databases.js';

const config = { workDir: '/w', disksDir: '/d', store: { kind: 'filesystem' as const, path: '/s' } };
const facts = (name: string) => ({ name, hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: 1 << 20 }], boot: { kind: 'disk' as const } });
const settings = { minIntervalSeconds: 0, barrierSeconds: 30, pauseSeconds: 5, commitSeconds: 600 };
const later = (seconds: number) => new Date(Date.now() + seconds * 1000);

/**
 * The vault's side of a consistency-group cut on every database dialect: the barrier answers only when every
 * member reached the phase, a deadline or a member's failure fails the cut, and `group_cut_id` is set on the
 * members' points only once every one of them is recorded, never on some of them.
 */
describe.each(TEST_DATABASES)('consistency-group cuts on %s', (kind) => {
  let database: TestDatabase;
  let db: VaultDb;
  let repos: VaultRepositories;
  let events: EventRepository;
  let coordinator: GroupCutCoordinator;
  let group: ConsistencyGroup;
  const reps: string[] = [];

  beforeEach(async () => {
    database = await createTestDatabase(kind);
    db = await openDatabase(database.url);
    repos = createRepositories(db);
    events = new EventRepository(db);
    coordinator = new GroupCutCoordinator(db, events, settings);
    const vault = await repos.vaults.create('demo');
    const capacity = { vcpus: 4, memoryMiB: 4096, diskGiB: 10 };
    const primary = await repos.sites.create({ vaultId: vault.id, name: 'primary', provider: 'qemu', config, capacity });
    const recovery = await repos.sites.create({ vaultId: vault.id, name: 'recovery', provider: 'qemu', config, capacity });
    const policy = await repos.policies.create({ vaultId: vault.id, name: 'default', crashIntervalSeconds: 30, retentionHours: 24, rpoThresholdSeconds: 900 });
    group = await repos.groups.create(vault.id, 'g1');
    reps.length = 0;
    for (const name of ['vm1', 'vm2']) {
      const m = await repos.machines.register(vault.id, primary.id, '0.1.0', facts(name));
      const r = await repos.replications.create({ vaultId: vault.id, name, machineId: m.id, policyId: policy.id, sourceSiteId: primary.id, targetSiteId: recovery.id });
      await repos.replications.setGroup(r.id, group.id);
      reps.push(r.id);
    }
  });
  afterEach(async () => {
    await db.destroy();
    await database.drop();
  });

  let n = 0;
  const record = async (replicationId: string) => {
    const id = `pt_0mwwd5ax${n++}_cccccccc`;
    const at = new Date().toISOString();
    await repos.replications.recordPoint({ id, replicationId, parentId: null, capturedAt: at, committedAt: at, consistency: 'crash', changedBytes: 1, storedBytes: 1 });
    return id;
  };
  const groupCutIds = async () => (await db.selectFrom('recoveryPoints').select('groupCutId').execute()).map((r) => r.groupCutId);

  it('walks the barrier with every member and marks all points of the cut at once', async () => {
    const cut = await coordinator.open(group, 'manual');
    const [a, b] = reps as [string, string];
    await expect(coordinator.open(group, 'manual')).rejects.toMatchObject({ code: 'conflict' }); // one open cut per group
    expect((await coordinator.cuts.pendingFor(a))?.id).toBe(cut.id);

    await coordinator.cuts.advance(cut, a, 'prepared');
    expect(await coordinator.cuts.barrier(cut.id, 'prepared')).toEqual({ kind: 'wait' });
    await coordinator.cuts.advance(cut, b, 'prepared');
    expect(await coordinator.cuts.barrier(cut.id, 'prepared')).toEqual({ kind: 'proceed' });
    await coordinator.cuts.advance(cut, a, 'paused');
    expect(await coordinator.cuts.barrier(cut.id, 'paused')).toEqual({ kind: 'wait' });
    await coordinator.cuts.advance(cut, b, 'paused');
    expect(await coordinator.cuts.barrier(cut.id, 'paused')).toEqual({ kind: 'proceed' });

    const pa = await record(a);
    await coordinator.cuts.report(await coordinator.cuts.get(cut.id), a, { pointId: pa });
    expect(await coordinator.cuts.settle(cut.id)).toBe('open');
    expect(await groupCutIds()).toEqual([null]); // one of two: nothing is marked yet

    // B's point is reported before the (standalone) replicator recorded it: the cut waits for the record.
    const pb = `pt_0mwwd5ax${n++}_cccccccc`;
    await coordinator.cuts.report(await coordinator.cuts.get(cut.id), b, { pointId: pb });
    expect(await coordinator.cuts.settle(cut.id)).toBe('open');
    await repos.replications.recordPoint({ id: pb, replicationId: b, parentId: null, capturedAt: new Date().toISOString(), committedAt: new Date().toISOString(), consistency: 'app', changedBytes: 1, storedBytes: 1 });
    expect(await coordinator.cuts.settle(cut.id)).toBe('complete');
    expect(await groupCutIds()).toEqual([cut.id, cut.id]);
    expect((await repos.replications.getPoint(b, pb)).groupCutId).toBe(cut.id);
    expect((await events.list(cut.vaultId, { type: 'group-cut.completed' })).length).toBe(1);
    expect(await coordinator.cuts.pendingFor(a)).toBeUndefined();
    // A member's replication can still be disabled and deleted; the cut stays as history.
    await repos.replications.delete(a);
    expect((await coordinator.cuts.get(cut.id)).state).toBe('complete');
  });

  it('a member that fails fails the cut for everyone; its peers points stay ordinary', async () => {
    const cut = await coordinator.open(group, 'manual');
    const [a, b] = reps as [string, string];
    for (const r of reps) await coordinator.cuts.advance(cut, r, 'paused');
    await coordinator.cuts.report(await coordinator.cuts.get(cut.id), a, { pointId: await record(a) });
    await coordinator.cuts.report(await coordinator.cuts.get(cut.id), b, { error: 'app-consistency hooks failed' });
    expect(await coordinator.cuts.settle(cut.id)).toBe('failed');
    expect(await coordinator.cuts.barrier(cut.id, 'paused')).toEqual({ kind: 'failed', reason: 'member vm2 failed: app-consistency hooks failed' });
    expect(await groupCutIds()).toEqual([null]);
    const failed = await events.list(cut.vaultId, { type: 'group-cut.failed' });
    expect(failed.length).toBe(1);
    // The group may be cut again at once.
    expect((await coordinator.open(group, 'manual')).state).toBe('open');
  });

  it('a member that never arrives fails the cut at the barrier deadline; one that never pauses, at the pause window', async () => {
    const [a] = reps as [string, string];
    const first = await coordinator.open(group, 'manual');
    await coordinator.cuts.advance(first, a, 'prepared');
    await coordinator.tick(later(10));
    expect((await coordinator.cuts.get(first.id)).state).toBe('open');
    await coordinator.tick(later(31));
    const f1 = await coordinator.cuts.get(first.id);
    expect(f1.state).toBe('failed');
    expect(f1.reason).toBe('barrier timed out waiting for vm1, vm2 to be paused'); // vm1 was only prepared

    const second = await coordinator.open(group, 'manual');
    for (const r of reps) await coordinator.cuts.advance(second, r, 'prepared');
    expect(await coordinator.cuts.barrier(second.id, 'prepared')).toEqual({ kind: 'proceed' }); // opens the pause window
    await coordinator.cuts.advance(second, a, 'paused');
    expect(await coordinator.cuts.barrier(second.id, 'paused', later(6))).toEqual({ kind: 'failed', reason: 'pause window of 5 s passed waiting for vm2 to pause' });
    // A point reported for a failed cut is never marked.
    await expect(coordinator.cuts.report(await coordinator.cuts.get(second.id), a, { pointId: await record(a) })).resolves.toBeUndefined();
    expect(await coordinator.cuts.settle(second.id)).toBe('failed');
    expect(await groupCutIds()).toEqual([null]);
  });

  it('a point reported without pausing at the barrier is refused; the commit deadline fails a cut a member never finishes', async () => {
    const [a] = reps as [string, string];
    const cut = await coordinator.open(group, 'manual');
    await expect(coordinator.cuts.report(cut, a, { pointId: await record(a) })).rejects.toMatchObject({ code: 'failed_precondition' });
    for (const r of reps) await coordinator.cuts.advance(cut, r, 'paused');
    await coordinator.cuts.report(await coordinator.cuts.get(cut.id), a, { pointId: await record(a) });
    await coordinator.tick(later(601));
    const c = await coordinator.cuts.get(cut.id);
    expect(c.state).toBe('failed');
    expect(c.reason).toContain('by the commit deadline');
    expect(await groupCutIds()).toEqual([null, null]);
  });

  it('scheduled cuts: a group of protected members is cut once its interval passed', async () => {
    const scheduled = new GroupCutCoordinator(db, events, { ...settings, minIntervalSeconds: 60 });
    await scheduled.tick();
    expect(await scheduled.cuts.list(group.id)).toEqual([]); // members still seeding: no cut
    for (const r of reps) await record(r); // the first point makes a replication protected
    await scheduled.tick();
    const [first] = await scheduled.cuts.list(group.id);
    expect(first?.trigger).toBe('schedule');
    await scheduled.cuts.fail(first?.id ?? '', 'test');
    await scheduled.tick(later(30));
    expect((await scheduled.cuts.list(group.id)).length).toBe(1);
    await scheduled.tick(later(61));
    expect((await scheduled.cuts.list(group.id)).length).toBe(2);
  });
  it('history: resolved cuts no kept point belongs to are forgotten after the window; open ones and those with points stay', async () => {
    const [a, b] = reps as [string, string];
    const complete = await coordinator.open(group, 'manual');
    for (const r of reps) await coordinator.cuts.advance(complete, r, 'paused');
    const points = [await record(a), await record(b)];
    await coordinator.cuts.report(await coordinator.cuts.get(complete.id), a, { pointId: points[0] as string });
    await coordinator.cuts.report(await coordinator.cuts.get(complete.id), b, { pointId: points[1] as string });
    expect(await coordinator.cuts.settle(complete.id)).toBe('complete');
    const failed = await coordinator.open(group, 'manual');
    await coordinator.cuts.fail(failed.id, 'test');
    const open = await coordinator.open(group, 'manual');

    expect(await coordinator.cuts.pruneHistory(new Date(Date.now() - 60_000).toISOString())).toBe(0); // all younger than the window
    // Past the window: the failed cut (no group point) goes; the complete one stays while its points exist.
    expect(await coordinator.cuts.pruneHistory(later(60).toISOString())).toBe(1);
    expect((await coordinator.cuts.list(group.id)).map((c) => c.id).sort()).toEqual([complete.id, open.id].sort());
    await expect(coordinator.cuts.get(failed.id)).rejects.toMatchObject({ code: 'not_found' });
    // Retention prunes one member's point: the other still names the cut, so it stays; once both are gone, it goes.
    await repos.replications.deletePoint(a, points[0] as string);
    expect(await coordinator.cuts.pruneHistory(later(60).toISOString())).toBe(0);
    await repos.replications.deletePoint(b, points[1] as string);
    expect(await coordinator.cuts.pruneHistory(later(60).toISOString())).toBe(1);
    expect((await coordinator.cuts.list(group.id)).map((c) => c.id)).toEqual([open.id]);
    expect(await db.selectFrom('groupCutMembers').select('cutId').distinct().execute()).toEqual([{ cutId: open.id }]);
  });
});
