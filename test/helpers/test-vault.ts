import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assembleVault } from '../../src/api/server.js';
import { silentLogger } from '../../src/core/log.js';
import { initVault } from '../../src/api/vault-init.js';
import { createCa, issueCertificate } from '../../src/vault/security/pki.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/store/chunks.js';
import { chunkHash } from './chunk-name.js';
import type { DatabaseKind } from '../../src/vault/db/dialects/dialect.js';
import { createTestDatabase } from './databases.js';
import { FakeFabric } from './fake-fabric.js';
import type { FabricProvider } from '../../src/fabric/provider.js';
import type { Site } from '../../src/vault/model.js';

let tls: { certPem: string; keyPem: string; caPem: string; caKeyPem: string } | undefined;
/**
 * One CA and server certificate per test process (RSA key generation is the slow part of an init); with the CA's
 * key, so the vault issues agent certificates from it.
 */
export function testCertificate(): { certPem: string; keyPem: string; caPem: string; caKeyPem: string } {
  if (!tls) {
    const ca = createCa('Refuge test CA');
    const server = issueCertificate(ca, { commonName: 'localhost', names: ['localhost', '127.0.0.1'], usage: 'server' });
    tls = { ...server, caPem: ca.certPem, caKeyPem: ca.keyPem };
  }
  return tls;
}

export type TestVault = Awaited<ReturnType<typeof createTestVault>>;

/**
 * A vault assembled in a fresh temporary folder with a fresh real database (SQLite by default, or an isolated
 * PostgreSQL schema) and real filesystem stores, driven
 * through `app.inject()`; sites run machines on a FakeFabric. `call` returns status and parsed JSON body.
 */
export async function createTestVault(database: DatabaseKind = 'sqlite', options: { holdTasks?: string[]; realFabric?: boolean; fabricFor?: (site: Site) => FabricProvider } = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'refuge-test-'));
  const fabric = new FakeFabric();
  const db = await createTestDatabase(database);
  const init = await initVault({ dataDir, databaseUrl: db.url, owner: 'owner', password: 'owner-password-1', certificate: testCertificate() });
  const { realFabric, ...rest } = options;
  // realFabric: every site runs machines with the provider its record names (qemu by default), as in production.
  const vault = await assembleVault({ dataDir, databaseUrl: db.url, log: silentLogger, ...(realFabric ? {} : { fabricFor: () => fabric }), monitorIntervalMs: 0, ...rest });
  const ownerToken = init.credentials.token;
  /** Calls the API as the owner unless `headers.authorization` says otherwise ('' sends no token). */
  const call = async <T = Record<string, unknown>>(method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) => {
    const { authorization = `Bearer ${ownerToken}`, ...rest } = headers;
    const r = await vault.app.inject({
      method: method as 'GET',
      url,
      ...(payload === undefined ? {} : { payload: payload as string }),
      headers: { ...rest, ...(authorization ? { authorization } : {}) },
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
    ownerToken,
    credentials: init.credentials,
    /** A token for a new user with `role` (agents have no tokens: they register for a client certificate). */
    async tokenFor(role: 'owner' | 'contributor' | 'operator' | 'reader'): Promise<string> {
      const name = `${role}-${Math.random().toString(36).slice(2, 8)}`;
      await call('POST', '/api/v1/users', { name, password: `${name}-password`, role });
      const login = await call<{ token: string }>('POST', '/api/v1/auth/login', { user: name, password: `${name}-password` }, { authorization: '' });
      return login.body.token;
    },
    async cleanup() {
      await vault.close();
      await db.drop();
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
      agentVersion: '0.3.0',
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
