import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RetentionService } from '../../../src/orchestration/retention.js';
import { chunkHash } from '../../helpers/chunk-name.js';
import { verifyStore } from '../../../src/store/verify.js';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { CHUNK, createTestVault, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

const HOUR = 3600_000;
const MIN = 60_000;

/**
 * The vault applies each policy's retention by itself (the ASR schedule cut at `retentionHours`): pruned points
 * leave the store and the vault's records, their data is reclaimed, kept points read back unchanged, and points in
 * use by a test failover are never touched.
 */
describe('retention of recovery points', () => {
  let v: TestVault;
  let repId: string;
  /** The bytes of chunk 0 at each point (the other chunks stay zero). */
  const content = new Map<string, Buffer>();
  let parent: string | null = null;

  const commit = async (capturedAt: number, consistency: 'crash' | 'app'): Promise<string> => {
    const data = randomBytes(CHUNK);
    const hash = chunkHash(data);
    const put = await v.call('PUT', `/replicator/v1/replications/${repId}/chunks/${hash}`, data, { 'content-type': 'application/octet-stream' });
    expect(put.status).toBe(204);
    const r = await v.call<{ pointId: string }>('POST', `/replicator/v1/replications/${repId}/points`, {
      parentId: parent,
      capturedAt: new Date(capturedAt).toISOString(),
      consistency,
      disks: [{ name: 'disk0', sizeBytes: 4 * CHUNK, changes: [[0, hash]] }],
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    parent = r.body.pointId;
    content.set(r.body.pointId, data);
    return r.body.pointId;
  };

  beforeEach(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
    const rep = await v.call<{ id: string }>('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    repId = rep.body.id;
    parent = null;
    content.clear();
  });
  afterEach(async () => v.cleanup());

  it('prunes by the ASR schedule within the policy window, preferring app-consistent points, and reclaims their data', async () => {
    const now = Date.now();
    const hourStart = Math.floor(now / HOUR) * HOUR;
    const tooOld = await commit(hourStart - 30 * HOUR + 10 * MIN, 'crash'); // beyond the 24 h window
    const appInHour = await commit(hourStart - 20 * HOUR + 10 * MIN, 'app'); // one hour keeps one point: the app one
    const crashInHour = await commit(hourStart - 20 * HOUR + 40 * MIN, 'crash');
    const alone = await commit(hourStart - 5 * HOUR + 5 * MIN, 'crash');
    const recent = await commit(hourStart - HOUR, 'crash'); // within 2 h: all kept
    const latest = await commit(hourStart, 'crash');

    // A service that garbage-collects right after pruning (the vault's waits hours between collections).
    const service = new RetentionService({ repos: v.repos, sites: v.sites }, { gcEveryMs: 0, gcGraceMs: 0 });
    const pass = await service.pass(now);
    expect(pass.pruned).toEqual({ vm1: 2 });
    expect(pass.collected.recovery).toBeGreaterThanOrEqual(2 * CHUNK); // the two random chunks only they held
    const kept = [appInHour, alone, recent, latest];
    const vault = await v.repos.vaults.get('demo');
    const site = await v.repos.sites.get(vault.id, 'recovery');
    const store = await v.sites.store(site);
    expect((await store.listPointIds(repId)).sort()).toEqual([...kept].sort());
    expect((await v.repos.replications.listPoints(repId)).map((p) => p.id).sort()).toEqual([...kept].sort());
    for (const id of [tooOld, crashInHour]) await expect(store.getPoint(repId, id)).rejects.toThrow();
    expect((await service.pass(now)).pruned).toEqual({}); // a second pass changes nothing
    expect((await verifyStore(store)).problems).toEqual([]);
    for (const id of kept) {
      const point = await store.getPoint(repId, id);
      expect((await store.readRange(point, 'disk0', 0, CHUNK)).equals(content.get(id) as Buffer)).toBe(true);
    }
  });

  it('forgets the records of points pruned outside the vault when two passes find them gone; alerts, forgetting nothing, when the store lacks the latest point', async () => {
    const now = Date.now();
    const old = await commit(now - 30 * HOUR, 'crash'); // beyond the 24 h window: this vault's retention prunes it
    const first = await commit(now - 30 * MIN, 'crash'); // the rest within two hours: retention keeps every one
    const second = await commit(now - 20 * MIN, 'crash');
    const latest = await commit(now - 10 * MIN, 'crash');
    const vault = await v.repos.vaults.get('demo');
    const store = await v.sites.store(await v.repos.sites.get(vault.id, 'recovery'));
    const recorded = async () => (await v.repos.replications.listPoints(repId)).map((p) => p.id).sort();
    const events = async (type: string) => (await v.call<{ items: { type: string; severity: string; message: string }[] }>('GET', `/api/v1/vaults/demo/events?type=${type}`)).body.items;
    const alerts = async (state: string) =>
      (await v.call<{ items: { kind: string; subject: string; severity: string; message: string }[] }>('GET', `/api/v1/vaults/demo/alerts?kind=replica-store-mismatch&state=${state}`)).body.items;

    await store.deletePoint(repId, old); // as another vault's retention does, before it deletes the record
    await store.deletePoint(repId, first); // what `refuge store prune` does to a point the vault lists
    const once = await v.retention.pass(now);
    expect(once.pruned).toEqual({ vm1: 1 }); // `old`, silently: retention prunes it anyway
    expect(once.forgotten).toEqual({}); // `first` missing once: not forgotten yet (a listing may lag, a deletion be under way)
    expect(await recorded()).toEqual([first, second, latest].sort());
    expect(await events('recovery-points.forgotten')).toEqual([]);
    const twice = await v.retention.pass(now);
    expect(twice.forgotten).toEqual({ vm1: 1 });
    expect(await recorded()).toEqual([second, latest].sort());
    const [forgot] = await events('recovery-points.forgotten');
    expect(forgot).toMatchObject({ severity: 'warning' });
    expect(forgot?.message).toContain('1 recovery point(s)');
    expect((await v.retention.pass(now)).forgotten).toEqual({}); // in line now

    // A store without the latest point is more likely the wrong one than a prune (which keeps the latest).
    const key = `points/${repId}/${latest}.json`;
    const manifest = await store.backend.get(key);
    await store.deletePoint(repId, latest);
    expect((await v.retention.pass(now)).forgotten).toEqual({});
    expect(await alerts('active')).toEqual([]); // once may be a repair under way
    expect((await v.retention.pass(now)).forgotten).toEqual({});
    expect(await recorded()).toEqual([second, latest].sort());
    const [mismatch] = await alerts('active');
    expect(mismatch).toMatchObject({ severity: 'critical', subject: 'vm1' });
    expect(mismatch?.message).toContain(`lacks the latest recovery point the vault lists for 'vm1' (${latest})`);
    await store.backend.put(key, manifest); // the right store is back
    expect((await v.retention.pass(now)).forgotten).toEqual({});
    expect(await alerts('active')).toEqual([]);
    expect(await alerts('resolved')).toHaveLength(1);
    expect(await recorded()).toEqual([second, latest].sort());
  });

  it('leaves a replication alone while a test failover holds one of its points', async () => {
    const now = Date.now();
    await commit(now - 40 * HOUR, 'crash');
    const old = parent as string;
    await commit(now - 10 * MIN, 'crash');
    const job = await v.call<JobView>('POST', '/api/v1/vaults/demo/replications/vm1/test-failover', { point: old });
    expect(job.status, JSON.stringify(job.body)).toBe(202);
    expect((await v.engine.waitFor(job.body.id)).state).toBe('succeeded');
    expect((await v.retention.pass(now)).pruned).toEqual({});
    expect((await v.repos.replications.listPoints(repId)).map((p) => p.id)).toContain(old);

    const cleanup = await v.call<JobView>('POST', '/api/v1/vaults/demo/replications/vm1/test-failover-cleanup', {});
    expect((await v.engine.waitFor(cleanup.body.id)).state).toBe('succeeded');
    expect((await v.retention.pass(now)).pruned).toEqual({ vm1: 1 });
    expect((await v.repos.replications.listPoints(repId)).map((p) => p.id)).not.toContain(old);
  });
});
