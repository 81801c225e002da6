import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isRefugeError } from '../../../src/core/errors.js';
import { assignAddress, parseCidr, reserveNics } from '../../../src/orchestration/addressing.js';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import type { FailoverRecord } from '../../../src/vault/model.js';
import { CHUNK, createTestVault, type TestVault } from '../../helpers/test-vault.js';
import { chunkHash } from '../../helpers/chunk-name.js';

describe('address assignment', () => {
  it('keeps a free static address that lies in the target network', () => {
    expect(assignAddress('10.2.0.0/24', '10.2.0.17', ['10.2.0.16'])).toBe('10.2.0.17');
  });
  it('gives the next free address when the static one is taken, wrapping past the end', () => {
    expect(assignAddress('10.2.0.0/24', '10.2.0.17', ['10.2.0.17', '10.2.0.18'])).toBe('10.2.0.19');
    expect(assignAddress('10.2.0.0/29', '10.2.0.6', ['10.2.0.6'])).toBe('10.2.0.4');
  });
  it('never assigns the network, broadcast, gateway, host or DNS address, nor one outside the network', () => {
    expect(assignAddress('10.2.0.0/24', '10.2.0.1', [])).toBe('10.2.0.4');
    expect(assignAddress('10.2.0.0/24', '10.2.0.255', [])).toBe('10.2.0.4');
    expect(assignAddress('10.2.0.0/24', '192.168.1.20', [])).toBe('10.2.0.4');
    expect(assignAddress('10.2.0.0/24', undefined, [])).toBe('10.2.0.4');
  });
  it('refuses a full network and a malformed CIDR with specific errors', () => {
    expect(() => assignAddress('10.2.0.0/29', undefined, ['10.2.0.4', '10.2.0.5', '10.2.0.6'])).toThrow(/every address of network 10.2.0.0\/29/);
    expect(() => parseCidr('10.2.0.0/33')).toThrow(/CIDR/);
    expect(() => parseCidr('10.2.0.300/24')).toThrow(/CIDR/);
    let caught: unknown;
    try {
      assignAddress('10.9.0.0/30', undefined, []);
    } catch (err) {
      caught = err;
    }
    expect(isRefugeError(caught, 'resource_exhausted')).toBe(true);
  });
});

/** A failover record holding `nics` at a site, as a recover job writes it. */
const failoverRecord = (siteId: string, nics: FailoverRecord['nics']): FailoverRecord => ({
  kind: 'failover',
  pointId: 'pt_x',
  pointCapturedAt: new Date().toISOString(),
  machineName: 'x',
  siteId,
  disks: [],
  requestedAt: new Date().toISOString(),
  ...(nics ? { nics } : {}),
});

/** Failovers through the API with network mappings: what the fabric is asked to attach and what the record says. */
describe('addresses of recovered machines', () => {
  let v: TestVault;
  const ok = (r: { status: number; body: unknown }) => {
    if (r.status >= 300) throw new Error(`setup call failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const protect = async (name: string, ipv4: string) => {
    ok(await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'primary', agentVersion: '0.3.0',
      machine: { name, hostname: name, os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: CHUNK }], boot: { kind: 'disk' }, nics: [{ name: 'eth0', network: 'lan', ipv4 }] },
    }));
    const rep = ok(await v.call('POST', '/api/v1/vaults/demo/replications', { machine: name, policy: 'default', targetSite: 'recovery' })) as { id: string };
    const data = Buffer.alloc(CHUNK, 1);
    ok(await v.call('PUT', `/replicator/v1/replications/${rep.id}/chunks/${chunkHash(data)}`, data, { 'content-type': 'application/octet-stream' }));
    ok(await v.call('POST', `/replicator/v1/replications/${rep.id}/points`, { parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: CHUNK, changes: [[0, chunkHash(data)]] }] }));
  };
  const run = async (name: string, op: string): Promise<JobView> => {
    const r = await v.call<JobView>('POST', `/api/v1/vaults/demo/replications/${name}/${op}`, {});
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    return v.engine.waitFor(r.body.id);
  };

  beforeEach(async () => {
    v = await createTestVault();
    ok(await v.call('POST', '/api/v1/vaults', { name: 'demo' }));
    ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'primary', networks: [{ name: 'lan', cidr: '10.1.0.0/24', addresses: 200 }] }));
    ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'recovery', networks: [{ name: 'dr-lan', cidr: '10.1.0.0/24', addresses: 200 }, { name: 'dr-test', cidr: '172.16.5.0/24', addresses: 50 }] }));
    ok(await v.call('POST', '/api/v1/vaults/demo/policies', { name: 'default' }));
    ok(await v.call('POST', '/api/v1/vaults/demo/network-mappings', { name: 'lan-to-dr', sourceSite: 'primary', sourceNetwork: 'lan', targetSite: 'recovery', targetNetwork: 'dr-lan', testNetwork: 'dr-test' }));
    await protect('vm1', '10.1.0.20');
    await protect('vm2', '10.1.0.20'); // a clash at the target: the second failover gets the next address
  });
  afterEach(async () => v.cleanup());

  it('keeps the static address when free, gives the next free one otherwise, and puts test failovers in the test network', async () => {
    const j1 = await run('vm1', 'failover');
    expect(j1.state).toBe('succeeded');
    expect(j1.result.addresses).toEqual([{ network: 'dr-lan', ipv4: '10.1.0.20', requestedIpv4: '10.1.0.20' }]);
    expect(v.fabric.machines.get('vm1')?.spec.nics).toEqual([{ network: 'dr-lan', cidr: '10.1.0.0/24', ipv4: '10.1.0.20' }]);
    const j2 = await run('vm2', 'failover');
    expect(j2.result.addresses).toEqual([{ network: 'dr-lan', ipv4: '10.1.0.21', requestedIpv4: '10.1.0.20' }]);
    const rep2 = (await v.call<{ failover: { failover: { nics: unknown } } }>('GET', '/api/v1/vaults/demo/replications/vm2')).body;
    expect(rep2.failover.failover.nics).toEqual([{ network: 'dr-lan', ipv4: '10.1.0.21', requestedIpv4: '10.1.0.20' }]);
  });

  it('attaches a test failover to the isolated test network, outside the production addresses', async () => {
    const job = await run('vm1', 'test-failover');
    expect(job.state).toBe('succeeded');
    expect(job.result.addresses).toEqual([{ network: 'dr-test', ipv4: '172.16.5.4', requestedIpv4: '10.1.0.20' }]);
    expect(v.fabric.machines.get('vm1-test')?.spec.nics).toEqual([{ network: 'dr-test', cidr: '172.16.5.0/24', ipv4: '172.16.5.4', isolated: true }]);
  });

  it('serializes the choices of one process: two slow saves at once still end with different addresses', async () => {
    const vault = await v.repos.vaults.get('demo');
    const site = await v.repos.sites.get(vault.id, 'recovery');
    const reps = [await v.repos.replications.get(vault.id, 'vm1'), await v.repos.replications.get(vault.id, 'vm2')];
    // A save that takes a while (a remote database): a choice made without waiting for the other's save would clash.
    const chosen = await Promise.all(
      reps.map((rep) =>
        reserveNics(v.repos, rep, site, 'failover', async (nics) => {
          await new Promise((r) => setTimeout(r, 100));
          await v.repos.replications.setFailover(rep.id, { failover: failoverRecord(site.id, nics) });
        }),
      ),
    );
    expect(chosen.map((n) => n[0]?.ipv4).sort()).toEqual(['10.1.0.20', '10.1.0.21']);
  });

  it('chooses again when another vault process records the same address at the same moment', async () => {
    const repos = v.repos;
    const vault = await repos.vaults.get('demo');
    const site = await repos.sites.get(vault.id, 'recovery');
    const rep1 = await repos.replications.get(vault.id, 'vm1');
    const rep2 = await repos.replications.get(vault.id, 'vm2');
    const record = (nics: FailoverRecord['nics']) => failoverRecord(site.id, nics);
    let saves = 0;
    const nics = await reserveNics(repos, rep1, site, 'failover', async (chosen) => {
      saves++;
      await repos.replications.setFailover(rep1.id, { failover: record(chosen) });
      // The other process, between this one's choice and its check: it records the same address for vm2.
      if (saves === 1) await repos.replications.setFailover(rep2.id, { failover: record(chosen) });
    });
    expect(saves).toBe(2);
    expect(nics).toEqual([{ network: 'dr-lan', ipv4: '10.1.0.21', requestedIpv4: '10.1.0.20' }]);
  });
});
