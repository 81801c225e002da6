import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type VaultDb } from '../../../src/vault/db/connect.js';
import { createRepositories, type VaultRepositories } from '../../../src/vault/repositories/index.js';
import { TEST_DATABASES, createTestDatabase, type TestDatabase } from '../../helpers/databases.js';

const config = { workDir: '/w', disksDir: '/d', store: { kind: 'filesystem' as const, path: '/s' } };
const facts = (name: string) => ({ name, hostname: 'h', os: 'linux', cpus: 2, memoryMiB: 512, disks: [{ name: 'disk0', sizeBytes: 1 << 20 }], boot: { kind: 'disk' as const } });

/** The repositories' contract, one body run against every real database dialect (an isolated database each). */
describe.each(TEST_DATABASES)('repositories on %s', (kind) => {
  let database: TestDatabase;
  let db: VaultDb;
  let repos: VaultRepositories;
  beforeEach(async () => {
    database = await createTestDatabase(kind);
    db = await openDatabase(database.url);
    repos = createRepositories(db);
  });
  afterEach(async () => {
    await db.destroy();
    await database.drop();
  });

  const seed = async () => {
    const vault = await repos.vaults.create('demo');
    const primary = await repos.sites.create({ vaultId: vault.id, name: 'primary', provider: 'qemu', config, capacity: { vcpus: 4, memoryMiB: 4096, diskGiB: 10 } });
    const recovery = await repos.sites.create({ vaultId: vault.id, name: 'recovery', provider: 'qemu', config, capacity: { vcpus: 8, memoryMiB: 8192, diskGiB: 20 } });
    const policy = await repos.policies.create({ vaultId: vault.id, name: 'default', crashIntervalSeconds: 30, retentionHours: 24, rpoThresholdSeconds: 900 });
    const machine = await repos.machines.register(vault.id, primary.id, '0.1.0', facts('vm1'));
    return { vault, primary, recovery, policy, machine };
  };

  it('migrates an empty database and again without change (idempotent)', async () => {
    const again = await openDatabase(database.url);
    await again.destroy();
    expect(await repos.vaults.list()).toEqual([]);
  });

  it('creates, reads back and lists configuration with JSON fields intact', async () => {
    const { vault, recovery, machine } = await seed();
    expect((await repos.vaults.get('demo')).id).toBe(vault.id);
    await repos.vaults.setLocation(vault.id, recovery.id);
    expect((await repos.vaults.get('demo')).locationSiteId).toBe(recovery.id);
    expect((await repos.sites.list(vault.id)).map((s) => [s.name, s.capacity.vcpus, s.config.store.kind])).toEqual([['primary', 4, 'filesystem'], ['recovery', 8, 'filesystem']]);
    expect(await repos.machines.get(vault.id, 'vm1')).toMatchObject({ id: machine.id, cpus: 2, memoryMiB: 512, disks: [{ name: 'disk0', sizeBytes: 1 << 20 }], boot: { kind: 'disk' } });
    expect((await repos.policies.get(vault.id, 'default')).rpoThresholdSeconds).toBe(900);
  });

  it('says which name exists and which is missing', async () => {
    const { vault } = await seed();
    await expect(repos.vaults.create('demo')).rejects.toMatchObject({ code: 'already_exists', message: "vault 'demo' already exists" });
    await expect(repos.sites.create({ vaultId: vault.id, name: 'primary', provider: 'qemu', config, capacity: { vcpus: 1, memoryMiB: 1, diskGiB: 1 } })).rejects.toMatchObject({ code: 'already_exists' });
    await expect(repos.policies.get(vault.id, 'nope')).rejects.toMatchObject({ code: 'not_found', message: "policy 'nope' not found" });
    await expect(repos.machines.get(vault.id, 'ghost')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('re-registering a machine refreshes its facts and keeps its id', async () => {
    const { vault, primary, machine } = await seed();
    const again = await repos.machines.register(vault.id, primary.id, '0.2.0', { ...facts('vm1'), cpus: 4 });
    expect(again.id).toBe(machine.id);
    expect(again.cpus).toBe(4);
    expect(again.agentVersion).toBe('0.2.0');
  });

  it('replications: one per machine, compare-and-set status, points in order, seeding -> protected on the first point', async () => {
    const { vault, primary, recovery, policy, machine } = await seed();
    const input = { vaultId: vault.id, name: 'vm1', machineId: machine.id, policyId: policy.id, sourceSiteId: primary.id, targetSiteId: recovery.id };
    const rep = await repos.replications.create(input);
    expect(rep.state).toBe('seeding');
    await expect(repos.replications.create(input)).rejects.toMatchObject({ code: 'already_exists' });

    const points = [0, 1, 2].map((i) => ({
      id: `pt_0mwwd5ax${i}_aaaaaaaa`,
      replicationId: rep.id,
      parentId: i === 0 ? null : `pt_0mwwd5ax${i - 1}_aaaaaaaa`,
      capturedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
      committedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
      consistency: 'crash' as const,
      changedBytes: 5_000_000_000 + i, // beyond 32 bits: bigint columns come back as numbers
      storedBytes: 10,
      // Churn per disk, as a replicator reports it since 2026-12-02; the first point stands for one recorded before.
      ...(i === 0 ? {} : { diskChurn: [{ name: 'disk0', changedBytes: 4_999_999_000 + i }, { name: 'data', changedBytes: 1000 }] }),
    }));
    for (const p of points) await repos.replications.recordPoint(p);
    await repos.replications.recordPoint(points[2]!); // recording again is harmless
    expect((await repos.replications.get(vault.id, 'vm1')).state).toBe('protected');
    expect((await repos.replications.listPoints(rep.id)).map((p) => p.id)).toEqual(points.map((p) => p.id).reverse());
    expect(await repos.replications.latestPoint(rep.id)).toEqual({ ...points[2], groupCutId: null }); // not part of a group cut
    expect((await repos.replications.listPoints(rep.id)).map((p) => p.diskChurn)).toEqual([points[2]?.diskChurn, points[1]?.diskChurn, null]);
    expect((await repos.replications.latestPoints([rep.id])).get(rep.id)?.diskChurn).toEqual(points[2]?.diskChurn);
    // A replay from a replicator that reports the churn per disk fills it in; one that does not changes nothing.
    const churn = [{ name: 'disk0', changedBytes: 7 }];
    await repos.replications.recordPoint({ ...points[0]!, diskChurn: churn });
    await repos.replications.recordPoint({ ...points[0]!, diskChurn: [{ name: 'disk0', changedBytes: 8 }] });
    await repos.replications.recordPoint(points[0]!);
    expect((await repos.replications.getPoint(rep.id, points[0]!.id)).diskChurn).toEqual(churn);

    const status = { state: 'protected' as const, testFailoverState: 'none' as const, activeJobId: null };
    const results = await Promise.all([
      repos.replications.compareAndSetStatus(rep.id, status, { state: 'failing-over', activeJobId: 'job_a' }),
      repos.replications.compareAndSetStatus(rep.id, status, { testFailoverState: 'starting', activeJobId: 'job_b' }),
    ]);
    expect(results.filter(Boolean)).toHaveLength(1);
    await repos.replications.delete(rep.id);
    await expect(repos.replications.get(vault.id, 'vm1')).rejects.toMatchObject({ code: 'not_found' });
    expect(await repos.replications.listPoints(rep.id)).toEqual([]);
  });

  it("wakes whoever waits for a replication's next point when one is recorded, and no one else", async () => {
    const { vault, primary, recovery, policy, machine } = await seed();
    const rep = await repos.replications.create({ vaultId: vault.id, name: 'vm1', machineId: machine.id, policyId: policy.id, sourceSiteId: primary.id, targetSiteId: recovery.id });
    const woken: string[] = [];
    const hour = 3_600_000;
    const mine = repos.replications.nextPointRecorded(rep.id, hour).then(() => woken.push('mine'));
    const other = new AbortController();
    const others = repos.replications.nextPointRecorded('rep_other', hour, other.signal).then(() => woken.push('other'));
    const at = new Date(Date.UTC(2026, 0, 1)).toISOString();
    await repos.replications.recordPoint({ id: 'pt_0mwwd5ax0_aaaaaaaa', replicationId: rep.id, parentId: null, capturedAt: at, committedAt: at, consistency: 'crash', changedBytes: 1, storedBytes: 1 });
    await mine; // an hour-long wait ends with the record, not the timeout
    expect(woken).toEqual(['mine']);
    other.abort(); // an abort ends a wait too
    await others;
    expect(woken).toEqual(['mine', 'other']);
  });
});
