import { chunkHash } from './chunk-name.js';
import { CHUNK, type TestVault } from './test-vault.js';

const ok = (r: { status: number; body: unknown }) => {
  if (r.status >= 300) throw new Error(`setup call failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r;
};

/**
 * Vault `demo` with sites `primary`/`recovery` and policy `default`, and machines `names` registered at primary,
 * each replicated to recovery with one committed point (its disk: one chunk holding the machine's name), through
 * the real API and replicator endpoints of a test vault.
 */
export async function seedPlanMachines(v: TestVault, names: string[], o: { capacity?: { vcpus: number; memoryMiB: number; diskGiB: number } } = {}): Promise<Map<string, Buffer>> {
  ok(await v.call('POST', '/api/v1/vaults', { name: 'demo' }));
  ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'primary', networks: [{ name: 'lan', cidr: '10.0.0.0/24', addresses: 200 }] }));
  ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'recovery', ...(o.capacity ? { capacity: o.capacity } : {}), networks: [{ name: 'lan', cidr: '10.0.0.0/24', addresses: 200 }, { name: 'bubble', cidr: '10.9.0.0/24', addresses: 200 }] }));
  ok(await v.call('POST', '/api/v1/vaults/demo/network-mappings', { name: 'lan', sourceSite: 'primary', sourceNetwork: 'lan', targetSite: 'recovery', targetNetwork: 'lan', testNetwork: 'bubble' }));
  ok(await v.call('PATCH', '/api/v1/vaults/demo', { location: 'recovery' }));
  ok(await v.call('POST', '/api/v1/vaults/demo/policies', { name: 'default', crashIntervalSeconds: 1 }));
  const disks = new Map<string, Buffer>();
  for (const [i, name] of names.entries()) {
    ok(await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'primary',
      agentVersion: '0.3.0',
      machine: { name, hostname: name, os: 'linux', cpus: 1, memoryMiB: 256, disks: [{ name: 'disk0', sizeBytes: 2 * CHUNK }], boot: { kind: 'disk' }, nics: [{ name: 'eth0', network: 'lan', ipv4: `10.0.0.${10 + i}` }] },
    }));
    const rep = ok(await v.call<{ id: string }>('POST', '/api/v1/vaults/demo/replications', { machine: name, policy: 'default', targetSite: 'recovery' })).body as { id: string };
    const disk = Buffer.alloc(2 * CHUNK);
    disk.write(`disk of ${name}`, 0);
    const hash = chunkHash(disk.subarray(0, CHUNK));
    ok(await v.call('PUT', `/replicator/v1/replications/${rep.id}/chunks/${hash}`, disk.subarray(0, CHUNK), { 'content-type': 'application/octet-stream' }));
    ok(await v.call('POST', `/replicator/v1/replications/${rep.id}/points`, {
      parentId: null,
      capturedAt: new Date().toISOString(),
      consistency: 'crash',
      disks: [{ name: 'disk0', sizeBytes: disk.length, changes: [[0, hash]] }],
    }));
    disks.set(name, disk);
  }
  return disks;
}
