import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestVault, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

interface Heartbeat {
  replication: { mode: string } | null;
}
interface Alerts {
  items: { kind: string; subject: string; severity: string; state: string; message: string }[];
}

/**
 * An agent too old for its target store (before 0.3.0, a store of format 3 or later names chunks by leaf digests)
 * is told `stop` rather than sent to fail every upload; the operator must hear why its replication ages.
 */
describe('an agent too old for its replica store', () => {
  let v: TestVault;
  beforeAll(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
    expect((await v.call('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' })).status).toBe(201);
  });
  afterAll(async () => v.cleanup());

  const heartbeat = async (agentVersion: string) => (await v.call<Heartbeat>('POST', '/api/v1/vaults/demo/agents/vm1/heartbeat', { agentVersion })).body;
  const alerts = async (state: 'active' | 'resolved') => (await v.call<Alerts>('GET', `/api/v1/vaults/demo/alerts?kind=agent-outdated&state=${state}`)).body.items;

  it('is told to stop and raises one critical alert naming machine, version and site; an upgraded agent resolves it', async () => {
    expect((await heartbeat('0.3.0')).replication?.mode).toBe('replicate');
    expect(await alerts('active')).toEqual([]);

    expect((await heartbeat('0.2.7')).replication?.mode).toBe('stop');
    expect((await heartbeat('0.2.7')).replication?.mode).toBe('stop'); // every 10 s: still one alert
    const active = await alerts('active');
    expect(active).toHaveLength(1);
    expect(active[0]).toMatchObject({ severity: 'critical', subject: 'vm1' });
    expect(active[0]?.message).toMatch(/'vm1' is version 0\.2\.7.*site 'recovery'.*0\.3\.0.*upgraded/);

    expect((await heartbeat('0.3.1')).replication?.mode).toBe('replicate');
    expect(await alerts('active')).toEqual([]);
    expect(await alerts('resolved')).toHaveLength(1);
  });
});
