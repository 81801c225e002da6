import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RetentionService } from '../../../src/orchestration/retention.js';
import { chunkHash } from '../../../src/store/chunks.js';
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

  it('forgets the records of points pruned outside the vault, with an event; not when the store lacks the latest point', async () => {
    const now = Date.now();
    const first = await commit(now - 30 * MIN, 'crash'); // all within two hours: retention keeps every one
    const second = await commit(now - 20 * MIN, 'crash');
    const latest = await commit(now - 10 * MIN, 'crash');
    const vault = await v.repos.vaults.get('demo');
    const store = await v.sites.store(await v.repos.sites.get(vault.id, 'recovery'));
    const recorded = async () => (await v.repos.replications.listPoints(repId)).map((p) => p.id).sort();
    const events = async (type: string) => (await v.call<{ items: { type: string; severity: string; message: string }[] }>('GET', `/api/v1/vaults/demo/events?type=${type}`)).body.items;

    await store.deletePoint(repId, first); // what `refuge store prune` does to a point the vault lists
    const pass = await v.retention.pass(now);
    expect(pass.forgotten).toEqual({ vm1: 1 });
    expect(pass.pruned).toEqual({});
    expect(await recorded()).toEqual([second, latest].sort());
    const [forgot] = await events('recovery-points.forgotten');
    expect(forgot).toMatchObject({ severity: 'warning' });
    expect(forgot?.message).toContain('1 recovery point(s)');
    expect((await v.retention.pass(now)).forgotten).toEqual({}); // in line now

    // A store without the latest point is more likely the wrong one than a prune (which keeps the latest).
    await store.deletePoint(repId, latest);
    expect((await v.retention.pass(now)).forgotten).toEqual({});
    expect(await recorded()).toEqual([second, latest].sort());
    const [lacks] = await events('recovery-points.store-lacks-latest');
    expect(lacks).toMatchObject({ severity: 'critical' });
    expect(lacks?.message).toContain(`its latest (${latest})`);
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
