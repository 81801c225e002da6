import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../../src/agent/agent.js';
import type { CaptureMode } from '../../../src/agent/capture/capture-mode.js';
import { startVaultServer, type VaultServer, type VaultServerOptions } from '../../../src/api/server.js';
import { silentLogger } from '../../../src/core/log.js';
import { requestJson, requestRaw, type HttpConnection } from '../../../src/core/http-client.js';
import { initVault } from '../../../src/api/vault-init.js';
import { testCertificate } from '../test-vault.js';
import type { RegistrationCredentials, RegistrationKeyResponse } from '../../../src/protocol/enrollment.js';
import { register, type Identity } from '../../../src/protocol/identity.js';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import type { StoreFormat } from '../../../src/store/store-config.js';
import { DEFAULT_CHUNK_SIZE } from '../../../src/store/chunks.js';
import { FakeFabric } from '../fake-fabric.js';

export const MiB = 1024 * 1024;
/** The chunk size of the fixture's stores (the store default): the granularity of what agents read and ship. */
export const CHUNK = DEFAULT_CHUNK_SIZE;

/**
 * A real vault (HTTPS with its own CA on a free port, tokens, SQLite, filesystem store; machines on a fake fabric) with vault `demo`, sites
 * `primary` and `recovery` and a policy cutting a point every second, plus helpers to run agents against it and to
 * read points back from the store. Agents register the real way: a one-time key redeemed for a client certificate
 * (mutual TLS from then on).
 */
/** `storeFormat`: the recovery site's store is created in that format (store-config.ts) before the vault opens it. */
export async function startAgentFixture(prefix = 'ragent-', serverOptions: Partial<VaultServerOptions> = {}, o: { storeFormat?: StoreFormat } = {}) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const fabric = new FakeFabric();
  const init = await initVault({ dataDir: join(dir, 'vault'), certificate: testCertificate() });
  const connection: HttpConnection = { token: init.credentials.token, ca: init.credentials.ca };
  const server: VaultServer = await startVaultServer({ dataDir: join(dir, 'vault'), port: 0, log: silentLogger, fabricFor: () => fabric, ...serverOptions });
  const api = <T>(method: string, path: string, body?: unknown): Promise<T> =>
    requestJson<T>(method, `${server.url}/api/v1${path}`, { connection, ...(body === undefined ? {} : { body }) });
  await api('POST', '/vaults', { name: 'demo' });
  await api('POST', '/vaults/demo/sites', { name: 'primary' });
  await api('POST', '/vaults/demo/sites', { name: 'recovery' });
  if (o.storeFormat) await ReplicaStore.open(await FilesystemBackend.create(join(dir, 'vault', 'sites', 'recovery', 'store')), { create: true, format: o.storeFormat });
  await api('POST', '/vaults/demo/policies', { name: 'default', crashIntervalSeconds: 1 });
  /** A registration file with a fresh one-time key, as `refuge agent key create --write` makes it. */
  const registrationFile = async (): Promise<RegistrationCredentials> => {
    const k = await api<RegistrationKeyResponse>('POST', '/vaults/demo/agents/keys', {});
    return { url: server.url, vault: 'demo', caFingerprint256: k.caFingerprint256, registrationKey: k.key };
  };
  let registrations = 0;
  /** Registers machine `name` (at `site`) in a fresh folder: its client certificate, key and trust. */
  const registerMachine = async (name: string, site = 'primary'): Promise<Identity> =>
    register(await registrationFile(), { kind: 'machine', site, machine: name }, join(dir, `identity-${name}-${++registrations}`));
  /** Registers a standalone replicator for `site` (its certificate names localhost and 127.0.0.1). */
  const registerReplicator = async (site = 'recovery'): Promise<Identity> =>
    register(await registrationFile(), { kind: 'replicator', site, names: ['localhost', '127.0.0.1'] }, join(dir, `identity-replicator-${++registrations}`));
  // Requests as vm1's agent makes them: with its client certificate (registered on first use: key generation costs).
  let vm1: Promise<HttpConnection> | undefined;
  const agentConnection = (): Promise<HttpConnection> => (vm1 ??= registerMachine('vm1').then((id) => id.connection));
  /** One request as the agent of vm1 would make it, answering status and parsed body whatever the status. */
  const agentHttp = async (method: string, url: string, o: { body?: unknown; bytes?: Uint8Array; headers?: Record<string, string> } = {}) => {
    const r = await requestRaw(method, url, { connection: await agentConnection(), ...o });
    return { status: r.status, json: <T = unknown>() => JSON.parse(r.text) as T };
  };

  let running: { agent: Agent; stop: AbortController; done: Promise<void> } | undefined;
  const points = async (machine = 'vm1') =>
    (await api<{ items: { id: string; capturedAt: string; changedBytes: number }[] }>('GET', `/vaults/demo/replications/${machine}/points`)).items;

  return {
    dir,
    server,
    api,
    connection,
    agentConnection,
    agentHttp,
    registrationFile,
    registerMachine,
    registerReplicator,
    points,
    get agent(): Agent | undefined {
      return running?.agent;
    },
    /** Starts an agent for machine vm1 with one disk of `sizeBytes` captured by `capture`. */
    startAgent(capture: CaptureMode, disks: { name: string; sizeBytes: number }[], extra: Partial<AgentOptions> = {}): Agent {
      const agent = new Agent({
        vaultUrl: server.url,
        vault: 'demo',
        site: 'primary',
        machine: { name: 'vm1', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks, boot: { kind: 'disk' } },
        capture,
        stateDir: join(dir, 'agent'),
        heartbeatSeconds: 0.2,
        log: silentLogger,
        // The agent registers itself on its first run (and again if its state folder is lost).
        registration: registrationFile,
        ...extra,
      });
      const stop = new AbortController();
      running = { agent, stop, done: agent.run(stop.signal) };
      running.done.catch(() => undefined);
      return agent;
    },
    async stopAgent(): Promise<void> {
      running?.stop.abort();
      await running?.done;
      running = undefined;
    },
    async enable(): Promise<string> {
      await waitFor(async () => (await api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 1);
      return (await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' })).id;
    },
    /** The first point captured after `after`. */
    async pointAfter(after: Date, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const p = (await points()).find((x) => Date.parse(x.capturedAt) > after.getTime());
        if (p) return p;
        if (Date.now() > deadline) throw new Error(`no point captured after ${after.toISOString()} within ${timeoutMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async restore(replicationId: string, pointId: string, disk = 'disk0'): Promise<Buffer> {
      const store = await ReplicaStore.open(new FilesystemBackend(join(dir, 'vault', 'sites', 'recovery', 'store')));
      const point = await store.getPoint(replicationId, pointId);
      const d = point.disks.find((x) => x.name === disk);
      return store.readRange(point, disk, 0, d?.sizeBytes ?? 0);
    },
    counters(replicationId: string) {
      return server.replicator.counters.get(replicationId);
    },
    async close(): Promise<void> {
      await this.stopAgent();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export type AgentFixture = Awaited<ReturnType<typeof startAgentFixture>>;

export async function waitFor(probe: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition', intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
