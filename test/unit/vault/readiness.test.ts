import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CheckResult, ReadinessReport } from '../../../src/vault/readiness/types.js';
import { chunkHash } from '../../helpers/chunk-name.js';
import { CHUNK, createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

type ErrorBody = { error: { code: string; message: string; failedChecks?: CheckResult[] } };

/**
 * Each readiness check from real conditions: the vault's key file, where the vault lives, a site's capacity and
 * networks, churn measured from committed points against the site's throughput, the agent's version, OS and disks.
 * (Networking and certificates, which need a listening vault and an agent's probes: readiness-agents.test.ts.)
 */
describe('readiness checks', () => {
  let v: TestVault;
  beforeEach(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
  });
  afterEach(async () => v.cleanup());

  const check = async (body: Record<string, unknown>, token?: string) => {
    const r = await v.call<ReadinessReport>('POST', '/api/v1/vaults/demo/readiness', body, token ? { authorization: `Bearer ${token}` } : {});
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body;
  };
  const of = (report: ReadinessReport, name: string) => report.results.find((r) => r.check === name) as CheckResult;
  const enableCheck = (token?: string) => check({ machine: 'vm1', targetSite: 'recovery' }, token);

  it('account: pass for an owner; warning when the key file is open to others; fail for a role that may not, or without the key', async () => {
    expect(of(await enableCheck(), 'account')).toMatchObject({ status: 'pass' });
    const key = join(v.dataDir, 'keys', 'vault.key');
    await chmod(key, 0o644);
    expect(of(await enableCheck(), 'account')).toMatchObject({ status: 'warning', remediation: `chmod 600 ${key}` });
    const operator = await v.tokenFor('operator');
    const denied = of(await enableCheck(operator), 'account');
    expect(denied.status).toBe('fail');
    expect(denied.message).toContain('lacks the configure permission');
    await rm(key);
    expect(of(await enableCheck(), 'account')).toMatchObject({ status: 'fail', message: expect.stringContaining('encryption key is missing') as unknown });
  });

  it('vault location: warning while unset or at the primary site, pass at the recovery site', async () => {
    expect(of(await enableCheck(), 'vault-location')).toMatchObject({ status: 'warning', message: "where vault 'demo' lives is not recorded" });
    await v.call('PATCH', '/api/v1/vaults/demo', { location: 'primary' });
    expect(of(await enableCheck(), 'vault-location').message).toContain("lives at the primary site 'primary'");
    await v.call('PATCH', '/api/v1/vaults/demo', { location: 'recovery' });
    expect(of(await enableCheck(), 'vault-location').status).toBe('pass');
  });

  it('target capacity: fail with the exact shortfall, warning when nearly full or a network is unmapped, pass with room', async () => {
    const capacity = async (c: Record<string, unknown>) => expect((await v.call('PATCH', '/api/v1/vaults/demo/sites/recovery', c)).status).toBe(200);
    await capacity({ capacity: { vcpus: 0, memoryMiB: 128, diskGiB: 0 } });
    const fail = of(await enableCheck(), 'target-capacity');
    expect(fail.status).toBe('fail');
    expect(fail.message).toBe("site 'recovery' needs 1 vCPUs, has 0 free; needs 256 MiB of memory, has 128 free; needs 1 GiB of disk, has 0 free");
    expect(fail.remediation).toContain('raise the capacity');
    await capacity({ capacity: { vcpus: 1, memoryMiB: 300, diskGiB: 10 } });
    expect(of(await enableCheck(), 'target-capacity')).toMatchObject({ status: 'warning', message: expect.stringContaining('over 80% full') as unknown });
    await capacity({ capacity: { vcpus: 8, memoryMiB: 8192, diskGiB: 100 } });
    expect(of(await enableCheck(), 'target-capacity').status).toBe('pass');

    // A machine with a NIC: unmapped is a warning; mapped onto a network with no free address, a fail.
    await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'primary', agentVersion: '0.1.0',
      machine: { name: 'vm2', hostname: 'h2', os: 'linux', cpus: 1, memoryMiB: 256, disks: [{ name: 'disk0', sizeBytes: CHUNK }], boot: { kind: 'disk' }, nics: [{ name: 'eth0', network: 'lan' }] },
    });
    expect(of(await check({ machine: 'vm2', targetSite: 'recovery' }), 'target-capacity')).toMatchObject({ status: 'warning', message: expect.stringContaining("no network mapping for vm2/eth0 (network 'lan')") as unknown });
    await v.call('PATCH', '/api/v1/vaults/demo/sites/primary', { networks: [{ name: 'lan', addresses: 10 }] });
    await capacity({ networks: [{ name: 'dr-lan', addresses: 0 }] });
    expect((await v.call('POST', '/api/v1/vaults/demo/network-mappings', { name: 'lan-to-dr', sourceSite: 'primary', sourceNetwork: 'lan', targetSite: 'recovery', targetNetwork: 'dr-lan' })).status).toBe(201);
    expect(of(await check({ machine: 'vm2', targetSite: 'recovery' }), 'target-capacity')).toMatchObject({ status: 'fail', message: expect.stringContaining("network 'dr-lan' needs 1 addresses, has 0") as unknown });
  });

  it('storage scalability: churn measured from points against the link: fail above it, warning near it, pass below; disks over the limit fail', async () => {
    const { replicationId, pointId } = await protectWithPoint(v);
    // A second point 50 s after the first, changing 1 MiB of chunks: 1 MiB / 50 s = 0.02 MiB/s of churn.
    const data = Buffer.alloc(CHUNK, 9);
    const hash = chunkHash(data);
    const changes = Array.from({ length: Math.max(1, (1024 * 1024) / CHUNK) }, (_, i) => [i, hash]);
    await v.call('PUT', `/replicator/v1/replications/${replicationId}/chunks/${hash}`, data, { 'content-type': 'application/octet-stream' });
    const first = (await v.call<{ capturedAt: string }>('GET', `/api/v1/vaults/demo/replications/vm1/points/${pointId}`)).body.capturedAt;
    await v.call('POST', `/replicator/v1/replications/${replicationId}/points`, {
      parentId: pointId, capturedAt: new Date(Date.parse(first) + 50_000).toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: 4 * CHUNK, changes }],
    });
    const limit = async (linkThroughputMiBps: number) => {
      await v.call('PATCH', '/api/v1/vaults/demo/sites/recovery', { limits: { linkThroughputMiBps } });
      return of(await check({ replication: 'vm1' }), 'storage-scalability');
    };
    const fail = await limit(0.01);
    expect(fail.status).toBe('fail');
    expect(fail.message).toBe("churn 0.02 MiB/s over the last 50 s is above the link into 'recovery' (0.01 MiB/s): the RPO target will break");
    expect(fail.measured.churnMiBps).toBe(0.02);
    expect((await limit(0.024)).status).toBe('warning');
    expect((await limit(10)).status).toBe('pass');

    await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'primary', agentVersion: '0.1.0',
      machine: { name: 'huge', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 256, disks: [{ name: 'os', sizeBytes: 512 }, { name: 'data', sizeBytes: 33 * 1024 ** 4 }], boot: { kind: 'disk' } },
    });
    expect(of(await check({ machine: 'huge', targetSite: 'recovery' }), 'storage-scalability')).toMatchObject({ status: 'fail', message: 'huge/data is 33792 GiB (limit 32768 GiB)' });
  });

  it('support matrix: pass for a current agent on Linux, warning for an older agent or another OS, fail for disks of partial sectors', async () => {
    expect(of(await enableCheck(), 'support-matrix').status).toBe('pass');
    const register = (name: string, agentVersion: string, os: string, sizeBytes: number) =>
      v.call('POST', '/api/v1/vaults/demo/agents/register', { site: 'primary', agentVersion, machine: { name, hostname: name, os, cpus: 1, memoryMiB: 256, disks: [{ name: 'disk0', sizeBytes }], boot: { kind: 'disk' } } });
    await register('old', '0.0.9', 'linux', CHUNK);
    expect(of(await check({ machine: 'old', targetSite: 'recovery' }), 'support-matrix')).toMatchObject({ status: 'warning', message: "the agent of 'old' is version 0.0.9; 0.1.0 is current" });
    await register('win', '0.1.0', 'windows server 2022', CHUNK);
    expect(of(await check({ machine: 'win', targetSite: 'recovery' }), 'support-matrix').status).toBe('warning');
    await register('odd', '0.1.0', 'linux', 1000);
    expect(of(await check({ machine: 'odd', targetSite: 'recovery' }), 'support-matrix')).toMatchObject({ status: 'fail', message: "disks of 'odd' are not whole 512-byte sectors: disk0" });
  });

  it('a fail blocks enable and failover (412 naming the check); an owner overrides with a recorded reason, a contributor may not', async () => {
    await v.call('PATCH', '/api/v1/vaults/demo/sites/recovery', { capacity: { vcpus: 0, memoryMiB: 0, diskGiB: 0 } });
    const blocked = await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    expect(blocked.status).toBe(412);
    expect(blocked.body.error.message).toContain("readiness check failed: target-capacity: site 'recovery' needs 1 vCPUs, has 0 free");
    expect(blocked.body.error.failedChecks?.map((c) => c.check)).toEqual(['target-capacity']);
    const contributor = await v.tokenFor('contributor');
    const notOwner = await v.call('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery', override: { reason: 'capacity arrives next week' } }, { authorization: `Bearer ${contributor}` });
    expect(notOwner.status).toBe(403);
    const overridden = await v.call<{ readiness: { report: string } }>('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery', override: { reason: 'capacity arrives next week' } });
    expect(overridden.status).toBe(201);
    const report = await v.call<ReadinessReport>('GET', `/api/v1/vaults/demo/readiness/${overridden.body.readiness.report}`);
    expect(report.body.override).toEqual({ by: 'user:owner', reason: 'capacity arrives next week' });

    // Before failover the recovery site's checks run again: still no capacity, so the failover is refused.
    await protectWithPointOnExisting(v);
    const failover = await v.call<ErrorBody>('POST', '/api/v1/vaults/demo/replications/vm1/failover', {});
    expect(failover.status).toBe(412);
    expect(failover.body.error.message).toContain('target-capacity');
    const forced = await v.call('POST', '/api/v1/vaults/demo/replications/vm1/failover', { override: { reason: 'primary is on fire' } });
    expect(forced.status).toBe(202);
    const events = await v.call<{ items: { type: string; message: string }[] }>('GET', '/api/v1/vaults/demo/events?type=readiness.overridden');
    expect(events.body.items.map((e) => e.message)).toEqual([expect.stringContaining('primary is on fire'), expect.stringContaining('capacity arrives next week')]);
  });

  it('periodically: when a replication\'s result worsens an alert is raised, and a capacity shortfall has its own', async () => {
    await protectWithPoint(v);
    await v.call('PATCH', '/api/v1/vaults/demo', { location: 'recovery' });
    expect(await v.readiness.runPeriodic()).toBe(0);
    await v.call('PATCH', '/api/v1/vaults/demo/sites/recovery', { capacity: { vcpus: 0, memoryMiB: 0, diskGiB: 0 } });
    expect(await v.readiness.runPeriodic()).toBe(1);
    const alerts = await v.call<{ items: { kind: string; severity: string; message: string }[] }>('GET', '/api/v1/vaults/demo/alerts?state=active');
    expect(alerts.body.items.map((a) => [a.kind, a.severity]).sort()).toEqual([['capacity-shortfall', 'critical'], ['readiness-worsened', 'critical']]);
    expect(alerts.body.items.find((a) => a.kind === 'readiness-worsened')?.message).toContain('target-capacity fail');
  });
});

/** Commits a first point for the already-enabled replication of vm1. */
async function protectWithPointOnExisting(v: TestVault): Promise<void> {
  const rep = await v.call<{ id: string }>('GET', '/api/v1/vaults/demo/replications/vm1');
  const data = Buffer.alloc(CHUNK, 7);
  const hash = chunkHash(data);
  await v.call('PUT', `/replicator/v1/replications/${rep.body.id}/chunks/${hash}`, data, { 'content-type': 'application/octet-stream' });
  const r = await v.call('POST', `/replicator/v1/replications/${rep.body.id}/points`, { parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: 4 * CHUNK, changes: [[0, hash]] }] });
  expect(r.status).toBe(201);
}
