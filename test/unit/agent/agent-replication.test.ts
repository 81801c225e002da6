import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent, type AgentOptions } from '../../../src/agent/agent.js';
import type { ReplicatorTransport } from '../../../src/agent/clients.js';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import { startVaultServer, type VaultServer } from '../../../src/api/server.js';
import type { RegistrationKeyResponse } from '../../../src/protocol/enrollment.js';
import { register } from '../../../src/protocol/identity.js';
import { silentLogger } from '../../../src/core/log.js';
import { DEFAULT_CHUNK_SIZE } from '../../../src/store/chunks.js';
import { chunkHash } from '../../helpers/chunk-name.js';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { FakeFabric } from '../../helpers/fake-fabric.js';
import { testCertificate } from '../../helpers/test-vault.js';
import { initVault } from '../../../src/api/vault-init.js';
import { requestJson, type HttpConnection } from '../../../src/core/http-client.js';

const MiB = 1024 * 1024;

/**
 * The agent against a real vault (listening on a free port, SQLite, filesystem store): seeding, incremental points
 * that ship only changed chunks, and a resync after lost agent state that ships only differences. Every point is
 * restored and compared byte for byte with the disk as it was when the point was cut.
 */
describe('agent replication (scan mode)', () => {
  let dir: string;
  let server: VaultServer;
  let diskPath: string;
  let run: { stop: AbortController; done: Promise<void> } | undefined;

  let connection: HttpConnection;
  const api = <T>(method: string, path: string, body?: unknown): Promise<T> =>
    requestJson<T>(method, `${server.url}/api/v1${path}`, { connection, ...(body === undefined ? {} : { body }) });

  const startAgent = (extra: Partial<AgentOptions> = {}) => {
    const agent = new Agent({
      ...extra,
      vaultUrl: server.url,
      vault: 'demo',
      site: 'primary',
      machine: { name: 'vm1', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: 8 * MiB }], boot: { kind: 'disk' } },
      capture: new ScanCapture({ disks: [{ name: 'disk0', path: diskPath }] }),
      stateDir: join(dir, 'agent'),
      heartbeatSeconds: 0.2,
      connection: agentConnection,
      log: silentLogger,
    });
    const stop = new AbortController();
    run = { stop, done: agent.run(stop.signal) };
  };
  const stopAgent = async () => {
    run?.stop.abort();
    await run?.done;
    run = undefined;
  };

  const points = async () => (await api<{ items: { id: string; capturedAt: string }[] }>('GET', '/vaults/demo/replications/vm1/points')).items;
  const waitForPointAfter = async (after: Date) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const p = (await points()).find((x) => Date.parse(x.capturedAt) > after.getTime());
      if (p) return p;
      if (Date.now() > deadline) throw new Error('no new point within 20 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const restore = async (replicationId: string, pointId: string) => {
    const store = await ReplicaStore.open(new FilesystemBackend(join(dir, 'vault', 'sites', 'recovery', 'store')));
    return store.readRange(await store.getPoint(replicationId, pointId), 'disk0', 0, 8 * MiB);
  };
  const write = async (offset: number, data: Buffer) => {
    const f = await open(diskPath, 'r+');
    await f.write(data, 0, data.length, offset);
    await f.close();
  };
  /** Chunk bytes the replicator accepted for a replication: what travelled over the wire. */
  const received = (id: string) => server.replicator.counters.get(id)?.bytesReceived ?? 0;

  let agentConnection: HttpConnection;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-agent-'));
    const fabric = new FakeFabric();
    const init = await initVault({ dataDir: join(dir, 'vault'), certificate: testCertificate() });
    connection = { token: init.credentials.token, ca: init.credentials.ca };
    server = await startVaultServer({ dataDir: join(dir, 'vault'), port: 0, log: silentLogger, fabricFor: () => fabric });
    await api('POST', '/vaults', { name: 'demo' });
    await api('POST', '/vaults/demo/sites', { name: 'primary' });
    // The agent's client certificate, from a one-time registration key (mutual TLS with the vault and replicator).
    const key = await api<RegistrationKeyResponse>('POST', '/vaults/demo/agents/keys', {});
    const creds = { url: server.url, vault: 'demo', caFingerprint256: key.caFingerprint256, registrationKey: key.key };
    agentConnection = (await register(creds, { kind: 'machine', site: 'primary', machine: 'vm1' }, join(dir, 'vm1-identity'))).connection;
    await api('POST', '/vaults/demo/sites', { name: 'recovery' });
    await api('POST', '/vaults/demo/policies', { name: 'default', crashIntervalSeconds: 1 });
    diskPath = join(dir, 'disk0.raw');
    const disk = Buffer.alloc(8 * MiB);
    randomBytes(3 * MiB).copy(disk, 2 * MiB); // chunks 2..4 random, the rest zeros
    await writeFile(diskPath, disk);
  });
  afterEach(async () => {
    await stopAgent();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('seeds, then ships only changed chunks, and every point restores to the disk as it was', async () => {
    startAgent();
    await waitFor(async () => (await api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 1);
    const rep = await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    const first = await waitForPointAfter(new Date(0));
    const seeded = await readDisk(diskPath);
    expect((await restore(rep.id, first.id)).equals(seeded)).toBe(true);
    expect(received(rep.id)).toBe(3 * MiB); // zero chunks are never sent
    const shown = await api<{ state: string; rpo: { latestPoint: { id: string } } }>('GET', '/vaults/demo/replications/vm1');
    expect(shown.state).toBe('protected');

    await stopAgent();
    await write(5 * MiB + 10, Buffer.from('changed in chunk five'));
    await write(2 * MiB, Buffer.alloc(MiB)); // chunk two becomes zeros: recorded, nothing to send
    const changedAt = new Date();
    startAgent();
    const second = await waitForPointAfter(changedAt);
    const changed = await readDisk(diskPath);
    expect((await restore(rep.id, second.id)).equals(changed)).toBe(true);
    expect((await restore(rep.id, first.id)).equals(seeded)).toBe(true);
    expect(received(rep.id)).toBe(3 * MiB + DEFAULT_CHUNK_SIZE); // exactly one more chunk
  });

  it('sends a long change list in parts ahead of its commit, and the point restores exactly', async () => {
    const staged: { part: number; entries: number }[] = [];
    // Staging from 4 listed chunks in parts of 5: the seed's 12 chunks go as two parts plus 2 with the commit.
    startAgent({
      staging: { above: 4, partEntries: 5 },
      transportFor: (client): ReplicatorTransport => Object.assign(Object.create(client) as ReplicatorTransport, {
        stageChanges: async (part: Parameters<NonNullable<ReplicatorTransport['stageChanges']>>[0], signal?: AbortSignal) => {
          staged.push({ part: part.part, entries: part.disks.reduce((n, d) => n + d.changes.length, 0) });
          await client.stageChanges(part, signal);
        },
      }),
    });
    await waitFor(async () => (await api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 1);
    const rep = await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    const first = await waitForPointAfter(new Date(0));
    expect((await restore(rep.id, first.id)).equals(await readDisk(diskPath))).toBe(true);
    expect(staged).toEqual([{ part: 0, entries: 5 }, { part: 1, entries: 5 }]);
    const store = await ReplicaStore.open(new FilesystemBackend(join(dir, 'vault', 'sites', 'recovery', 'store')));
    expect(await store.backend.list('staging/')).toEqual([]); // the commit deleted its stage

    await write(5 * MiB + 10, Buffer.from('changed in chunk five')); // a short list: committed whole
    const changedAt = new Date();
    const second = await waitForPointAfter(changedAt);
    expect((await restore(rep.id, second.id)).equals(await readDisk(diskPath))).toBe(true);
    expect(staged).toHaveLength(2);
  });

  it('resynchronizes after the agent loses its state by hash comparison, not a full copy', async () => {
    startAgent();
    await waitFor(async () => (await api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 1);
    const rep = await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    await waitForPointAfter(new Date(0));
    await stopAgent();
    await rm(join(dir, 'agent'), { recursive: true, force: true });
    await write(3 * MiB, Buffer.alloc(MiB)); // a chunk zeroed while tracking was lost
    await write(6 * MiB, randomBytes(MiB)); // and a new one
    const changedAt = new Date();
    const before = received(rep.id);
    startAgent();
    const point = await waitForPointAfter(changedAt);
    expect((await restore(rep.id, point.id)).equals(await readDisk(diskPath))).toBe(true);
    expect(received(rep.id) - before).toBe(MiB);
  });

  it("ships and stores in the chunk size of the replication's policy, and a policy keeps its chunk size", async () => {
    await api('POST', '/vaults/demo/policies', { name: 'small', crashIntervalSeconds: 1, chunkSizeKiB: 16 });
    await expect(api('POST', '/vaults/demo/policies', { name: 'odd', chunkSizeKiB: 12 })).rejects.toMatchObject({ message: expect.stringContaining('chunkSizeKiB 12 is not a usable chunk size') as unknown });
    await expect(api('PATCH', '/vaults/demo/policies/small', { chunkSizeKiB: 64 })).rejects.toMatchObject({ details: { status: 412 } });
    startAgent();
    await waitFor(async () => (await api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 1);
    const rep = await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'small', targetSite: 'recovery' });
    const first = await waitForPointAfter(new Date(0));
    expect((await restore(rep.id, first.id)).equals(await readDisk(diskPath))).toBe(true);
    expect(received(rep.id)).toBe(3 * MiB);
    await stopAgent();
    await write(4 * MiB + 100, Buffer.from('one small chunk changes'));
    const changedAt = new Date();
    startAgent();
    const second = await waitForPointAfter(changedAt);
    expect((await restore(rep.id, second.id)).equals(await readDisk(diskPath))).toBe(true);
    expect(received(rep.id)).toBe(3 * MiB + 16 * 1024); // one 16 KiB chunk, where the store's default is 256 KiB
    const store = await ReplicaStore.open(new FilesystemBackend(join(dir, 'vault', 'sites', 'recovery', 'store')));
    expect((await store.getPoint(rep.id, second.id)).disks.map((d) => d.chunkSize)).toEqual([16 * 1024]);
  });

  it('the replicator rejects a chunk whose bytes do not match its hash and a commit on a stale parent', async () => {
    await api('POST', '/vaults/demo/agents/register', {
      site: 'primary', agentVersion: 't',
      machine: { name: 'vm1', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: MiB }], boot: { kind: 'disk' } },
    });
    const rep = await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    const base = `${server.url}/replicator/v1/replications/${rep.id}`;
    const data = randomBytes(4096);
    const wrong = chunkHash(Buffer.from('something else'));
    const c = { connection: agentConnection };
    await expect(requestJson('PUT', `${base}/chunks/${wrong}`, { ...c, bytes: data })).rejects.toMatchObject({
      details: { status: 400 },
      message: expect.stringContaining(`not to the claimed ${wrong}`) as unknown,
    });
    const missing = await requestJson<{ missing: string[] }>('POST', `${base}/chunks/missing`, { ...c, body: { hashes: [wrong] } });
    expect(missing.missing).toEqual([wrong]); // nothing stored under the wrong name

    const commit = requestJson('POST', `${base}/points`, {
      ...c,
      body: { parentId: 'pt_0mwwd5axj_aaaaaaaa', capturedAt: new Date().toISOString(), consistency: 'crash', disks: [{ name: 'disk0', sizeBytes: MiB, changes: [] }] },
    });
    await expect(commit).rejects.toMatchObject({ details: { status: 409, latestPointId: null } });
  });
});

const readDisk = (path: string): Promise<Buffer> => readFile(path);

async function waitFor(probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}
