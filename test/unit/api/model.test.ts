import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReadinessReport } from '../../../src/vault/readiness/types.js';
import { TEST_DATABASES } from '../../helpers/databases.js';
import { createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

type ErrorBody = { error: { code: string; message: string; field?: string } };
type Page<T> = { items: T[]; nextCursor: string | null };

/** The rest of the model through the API, on every database: paging, filters, groups, mappings, plans, deletes. */
describe.each(TEST_DATABASES)('API model on %s', (database) => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault(database);
    await seedConfiguration(v);
    await protectWithPoint(v);
  });
  afterEach(async () => v.cleanup());

  it('pages lists by name with a cursor, and filters replications', async () => {
    for (const s of ['s1', 's2', 's3']) await v.call('POST', '/api/v1/vaults/demo/sites', { name: s });
    const first = await v.call<Page<{ name: string }>>('GET', '/api/v1/vaults/demo/sites?limit=2');
    expect(first.body.items.map((s) => s.name)).toEqual(['primary', 'recovery']);
    const second = await v.call<Page<{ name: string }>>('GET', `/api/v1/vaults/demo/sites?limit=2&cursor=${first.body.nextCursor}`);
    expect(second.body.items.map((s) => s.name)).toEqual(['s1', 's2']);
    const last = await v.call<Page<{ name: string }>>('GET', `/api/v1/vaults/demo/sites?limit=2&cursor=${second.body.nextCursor}`);
    expect(last.body).toEqual({ items: [expect.objectContaining({ name: 's3' })], nextCursor: null });
    expect((await v.call<Page<unknown>>('GET', '/api/v1/vaults/demo/replications?state=protected')).body.items).toHaveLength(1);
    expect((await v.call<Page<unknown>>('GET', '/api/v1/vaults/demo/replications?state=seeding')).body.items).toHaveLength(0);
    expect((await v.call<Page<unknown>>('GET', '/api/v1/vaults/demo/replications?targetSite=primary')).body.items).toHaveLength(0);
    expect((await v.call<ErrorBody>('GET', '/api/v1/vaults/demo/replications?state=lost')).body.error.field).toBe('/querystring/state');
  });

  it('consistency groups: a replication joins by PATCH; a group in use cannot be deleted', async () => {
    expect((await v.call('POST', '/api/v1/vaults/demo/consistency-groups', { name: 'web-tier' })).status).toBe(201);
    const joined = await v.call<{ group: string }>('PATCH', '/api/v1/vaults/demo/replications/vm1', { group: 'web-tier' });
    expect(joined.body.group).toBe('web-tier');
    expect((await v.call<{ replications: string[] }>('GET', '/api/v1/vaults/demo/consistency-groups/web-tier')).body.replications).toEqual(['vm1']);
    const inUse = await v.call<ErrorBody>('DELETE', '/api/v1/vaults/demo/consistency-groups/web-tier');
    expect(inUse.status).toBe(412);
    expect(inUse.body.error.message).toBe("consistency group 'web-tier' is still used by replication 'vm1'");
    await v.call('PATCH', '/api/v1/vaults/demo/replications/vm1', { group: null });
    expect((await v.call('DELETE', '/api/v1/vaults/demo/consistency-groups/web-tier')).status).toBe(204);
  });

  it('network mappings name networks the sites have', async () => {
    const bad = await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/network-mappings', { name: 'm', sourceSite: 'primary', sourceNetwork: 'lan', targetSite: 'recovery', targetNetwork: 'dr' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ message: "site 'primary' has no network 'lan'", field: '/body/sourceNetwork' });
    await v.call('PATCH', '/api/v1/vaults/demo/sites/primary', { networks: [{ name: 'lan', addresses: 50 }] });
    await v.call('PATCH', '/api/v1/vaults/demo/sites/recovery', { networks: [{ name: 'dr', addresses: 50 }, { name: 'dr-test', addresses: 50 }] });
    const ok = await v.call('POST', '/api/v1/vaults/demo/network-mappings', { name: 'm', sourceSite: 'primary', sourceNetwork: 'lan', targetSite: 'recovery', targetNetwork: 'dr', testNetwork: 'dr-test' });
    expect(ok.body).toMatchObject({ name: 'm', sourceSite: 'primary', targetNetwork: 'dr', testNetwork: 'dr-test' });
    const siteInUse = await v.call<ErrorBody>('DELETE', '/api/v1/vaults/demo/sites/recovery');
    expect(siteInUse.status).toBe(412);
  });

  it('recovery plans: ordered groups of existing replications with actions; checked per plan for readiness', async () => {
    const groups = [{ name: 'db', replications: ['vm1'], pre: [{ name: 'ask', kind: 'manual', target: 'confirm the primary is down' }] }];
    const created = await v.call<{ groups: { pre: unknown[]; post: unknown[] }[] }>('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'all', description: 'everything', groups });
    expect(created.status).toBe(201);
    expect(created.body.groups[0]).toMatchObject({ pre: [{ kind: 'manual' }], post: [] });
    expect((await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'all', groups })).status).toBe(409);
    const unknown = await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'p2', groups: [{ name: 'g', replications: ['ghost'] }] });
    expect(unknown.body.error).toMatchObject({ code: 'invalid_argument', message: "no replication named 'ghost'" });
    const eight = Array.from({ length: 8 }, (_, i) => ({ name: `g${i}`, replications: [] }));
    expect((await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'p3', groups: eight })).body.error.field).toBe('/body/groups');
    const report = await v.call<ReadinessReport>('POST', '/api/v1/vaults/demo/readiness', { plan: 'all' });
    expect(report.body).toMatchObject({ scope: 'plan', subject: 'all' });
    expect(report.body.results.map((r) => r.check)).toHaveLength(7);
    expect((await v.call('PATCH', '/api/v1/vaults/demo/recovery-plans/all', { description: 'changed' })).status).toBe(200);
    expect((await v.call('DELETE', '/api/v1/vaults/demo/recovery-plans/all')).status).toBe(204);
  });

  it('policies and machines: update, and no delete while a replication uses them', async () => {
    const p = await v.call<{ rpoThresholdSeconds: number; bandwidthMiBps: number }>('PATCH', '/api/v1/vaults/demo/policies/default', { rpoThresholdSeconds: 120, bandwidthMiBps: 50 });
    expect(p.body).toMatchObject({ rpoThresholdSeconds: 120, bandwidthMiBps: 50 });
    expect((await v.call<ErrorBody>('DELETE', '/api/v1/vaults/demo/policies/default')).body.error.message).toBe("policy 'default' is still used by replication 'vm1'");
    expect((await v.call<ErrorBody>('DELETE', '/api/v1/vaults/demo/machines/vm1')).status).toBe(412);
    const agents = await v.call<Page<{ name: string; status: string; version: string }>>('GET', '/api/v1/vaults/demo/agents');
    expect(agents.body.items).toEqual([expect.objectContaining({ name: 'vm1', status: 'connected', version: '0.3.0' })]);
  });

  it('deletes a vault without sites along with its unused registration keys (found by the API fuzzer: a 500 before)', async () => {
    expect((await v.call('POST', '/api/v1/vaults', { name: 'spare' })).status).toBe(201);
    expect((await v.call('POST', '/api/v1/vaults/spare/agents/keys', {})).status).toBe(201);
    expect((await v.call('DELETE', '/api/v1/vaults/spare')).status).toBe(204);
    expect((await v.call('GET', '/api/v1/vaults/spare')).status).toBe(404);
  });
});
