import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assembleVault } from '../../src/api/server.js';
import { silentLogger } from '../../src/core/log.js';
import { DEFAULT_CHUNK_SIZE, chunkHash } from '../../src/store/chunks.js';
import { FakeFabric } from './fake-fabric.js';

export type TestVault = Awaited<ReturnType<typeof createTestVault>>;

/**
 * A vault assembled in a fresh temporary folder with a real SQLite database and real filesystem stores, driven
 * through `app.inject()`; sites run machines on a FakeFabric. `call` returns status and parsed JSON body.
 */
export async function createTestVault() {
  const dataDir = await mkdtemp(join(tmpdir(), 'refuge-test-'));
  const fabric = new FakeFabric();
  const vault = await assembleVault({ dataDir, log: silentLogger, fabricFor: () => fabric });
  const call = async <T = Record<string, unknown>>(method: string, url: string, payload?: unknown, headers?: Record<string, string>) => {
    const r = await vault.app.inject({
      method: method as 'GET',
      url,
      ...(payload === undefined ? {} : { payload: payload as string }),
      ...(headers ? { headers } : {}),
    });
    let body: T;
    try {
      body = r.json<T>();
    } catch {
      body = r.body as T;
    }
    return { status: r.statusCode, body };
  };
  return {
    ...vault,
    dataDir,
    fabric,
    call,
    async cleanup() {
      await vault.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The chunk size of the stores the test vault creates (the store's default). */
export const CHUNK = DEFAULT_CHUNK_SIZE;

/** A vault `demo` with sites `primary` and `recovery`, policy `default`, and machine `vm1` registered at primary. */
export async function seedConfiguration(v: TestVault, disks = [{ name: 'disk0', sizeBytes: 4 * CHUNK }]): Promise<void> {
  const ok = (r: { status: number; body: unknown }) => {
    if (r.status >= 300) throw new Error(`setup call failed: ${r.status} ${JSON.stringify(r.body)}`);
  };
  ok(await v.call('POST', '/api/v1/vaults', { name: 'demo' }));
  ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'primary' }));
  ok(await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'recovery' }));
  ok(await v.call('POST', '/api/v1/vaults/demo/policies', { name: 'default', crashIntervalSeconds: 1 }));
  ok(
    await v.call('POST', '/api/v1/vaults/demo/agents/register', {
      site: 'primary',
      agentVersion: '0.1.0',
      machine: { name: 'vm1', hostname: 'host1', os: 'linux', cpus: 1, memoryMiB: 256, disks, boot: { kind: 'disk' } },
    }),
  );
}

/** Enables replication of vm1 to recovery and commits one point through the replicator endpoints; returns the disk. */
export async function protectWithPoint(v: TestVault, content?: Buffer): Promise<{ replicationId: string; pointId: string; disk: Buffer }> {
  const rep = await v.call<{ id: string }>('POST', '/api/v1/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
  if (rep.status !== 201) throw new Error(`enable failed: ${JSON.stringify(rep.body)}`);
  const disk = content ?? Buffer.alloc(4 * CHUNK);
  if (!content) {
    disk.fill(7, 0, CHUNK);
    disk.write('refuge', 3 * CHUNK + 100);
  }
  const changes: [number, string | null][] = [];
  for (let i = 0; i < disk.length / CHUNK; i++) {
    const data = disk.subarray(i * CHUNK, (i + 1) * CHUNK);
    if (data.every((b) => b === 0)) continue;
    const hash = chunkHash(data);
    const put = await v.call('PUT', `/replicator/v1/replications/${rep.body.id}/chunks/${hash}`, data, { 'content-type': 'application/octet-stream' });
    if (put.status !== 204) throw new Error(`chunk upload failed: ${JSON.stringify(put.body)}`);
    changes.push([i, hash]);
  }
  const point = await v.call<{ pointId: string }>('POST', `/replicator/v1/replications/${rep.body.id}/points`, {
    parentId: null,
    capturedAt: new Date().toISOString(),
    consistency: 'crash',
    disks: [{ name: 'disk0', sizeBytes: disk.length, changes }],
  });
  if (point.status !== 201) throw new Error(`commit failed: ${JSON.stringify(point.body)}`);
  return { replicationId: rep.body.id, pointId: point.body.pointId, disk };
}
