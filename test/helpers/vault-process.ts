import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initVault, type CredentialsFile } from '../../src/api/vault-init.js';
import { spawnRefuge, stopChild, waitForOutput } from '../../src/cli/quickstart/children.js';
import { requestJson, type HttpConnection } from '../../src/core/http-client.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/store/chunks.js';
import { chunkHash } from './chunk-name.js';
import { testCertificate } from './test-vault.js';

export interface VaultProcess {
  url: string;
  dataDir: string;
  pid: number;
  /** Calls the API (paths under /api/v1) as the owner. */
  api<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
  connection: HttpConnection;
  kill(signal: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

/** Initializes a data folder (test CA, owner token) on `databaseUrl` (default SQLite in the folder). */
export async function initTestVault(databaseUrl?: string, dataDir?: string): Promise<{ dataDir: string; credentials: CredentialsFile }> {
  const dir = dataDir ?? (await mkdtemp(join(tmpdir(), 'refuge-vault-')));
  const r = await initVault({ dataDir: dir, owner: 'owner', password: 'owner-password-1', certificate: testCertificate(), ...(databaseUrl ? { databaseUrl } : {}) });
  return { dataDir: dir, credentials: r.credentials };
}

/** A real `refuge vault` process (bin/refuge.js, the built dist/) on an initialized data folder. */
export async function startVaultProcess(o: { dataDir: string; credentials: CredentialsFile; databaseUrl?: string; env?: Record<string, string> }): Promise<VaultProcess> {
  const log = join(o.dataDir, `vault-${Date.now()}.log`);
  const args = ['vault', '--data', o.dataDir, '--listen', '127.0.0.1:0', ...(o.databaseUrl ? ['--database', o.databaseUrl] : [])];
  const saved = { ...process.env };
  Object.assign(process.env, { REFUGE_LOG_LEVEL: 'info', ...o.env });
  const child = spawnRefuge(args, log);
  process.env = saved;
  const url = (await waitForOutput(child, /vault listening on (\S+)/, 30_000, log))[1] as string;
  const connection = { token: o.credentials.token, ca: o.credentials.ca };
  return {
    url,
    dataDir: o.dataDir,
    pid: child.pid as number,
    connection,
    api: (method, path, body) => requestJson(method, `${url}/api/v1${path}`, { connection, ...(body === undefined ? {} : { body }) }),
    async kill(signal) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill(signal);
      await exited;
    },
    stop: () => stopChild(child),
  };
}

const MiB = 1024 * 1024;
const CHUNK = DEFAULT_CHUNK_SIZE;

/** Vault `demo`, sites `primary`/`recovery`, policy `default`, and machines `names` each with one committed point. */
export async function seedReplications(v: VaultProcess, names: string[]): Promise<{ disks: Map<string, Buffer>; ids: Map<string, string> }> {
  await v.api('POST', '/vaults', { name: 'demo' });
  await v.api('POST', '/vaults/demo/sites', { name: 'primary' });
  await v.api('POST', '/vaults/demo/sites', { name: 'recovery' });
  await v.api('POST', '/vaults/demo/policies', { name: 'default' });
  const disks = new Map<string, Buffer>();
  const ids = new Map<string, string>();
  for (const [i, name] of names.entries()) {
    const disk = Buffer.alloc(4 * MiB);
    disk.write(`refuge disk of ${name}`, 0);
    disk.fill(i + 1, 2 * MiB, 3 * MiB);
    await v.api('POST', '/vaults/demo/agents/register', {
      site: 'primary',
      agentVersion: '0.3.0',
      machine: { name, hostname: name, os: 'linux', cpus: 1, memoryMiB: 64, disks: [{ name: 'disk0', sizeBytes: disk.length }], boot: { kind: 'disk' } },
    });
    const rep = await v.api<{ id: string }>('POST', '/vaults/demo/replications', { machine: name, policy: 'default', targetSite: 'recovery' });
    const changes: [number, string][] = [];
    for (let c = 0; c < disk.length / CHUNK; c++) {
      const data = disk.subarray(c * CHUNK, (c + 1) * CHUNK);
      if (data.every((b) => b === 0)) continue;
      const hash = chunkHash(data);
      await requestJson('PUT', `${v.url}/replicator/v1/replications/${rep.id}/chunks/${hash}`, { connection: v.connection, bytes: data });
      changes.push([c, hash]);
    }
    await requestJson('POST', `${v.url}/replicator/v1/replications/${rep.id}/points`, {
      connection: v.connection,
      body: { parentId: null, capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: disk.length, changes }] },
    });
    disks.set(name, disk);
    ids.set(name, rep.id);
  }
  return { disks, ids };
}
