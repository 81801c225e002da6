import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../../src/agent/agent.js';
import type { CaptureMode } from '../../../src/agent/capture/capture-mode.js';
import { startVaultServer, type VaultServer } from '../../../src/api/server.js';
import { silentLogger } from '../../../src/core/log.js';
import { FilesystemBackend } from '../../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../../src/store/replica-store.js';
import { FakeFabric } from '../fake-fabric.js';

export const MiB = 1024 * 1024;

/**
 * A real vault (HTTP on a free port, SQLite, filesystem store; machines on a fake fabric) with vault `demo`, sites
 * `primary` and `recovery` and a policy cutting a point every second, plus helpers to run agents against it and to
 * read points back from the store.
 */
export async function startAgentFixture(prefix = 'ragent-') {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const fabric = new FakeFabric();
  const server: VaultServer = await startVaultServer({ dataDir: join(dir, 'vault'), port: 0, log: silentLogger, fabricFor: () => fabric });
  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await fetch(`${server.url}/api/v1${path}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const json = (await r.json()) as T;
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  };
  await api('POST', '/vaults', { name: 'demo' });
  await api('POST', '/vaults/demo/sites', { name: 'primary' });
  await api('POST', '/vaults/demo/sites', { name: 'recovery' });
  await api('POST', '/vaults/demo/policies', { name: 'default', crashIntervalSeconds: 1 });

  let running: { agent: Agent; stop: AbortController; done: Promise<void> } | undefined;
  const points = async (machine = 'vm1') =>
    (await api<{ items: { id: string; capturedAt: string; changedBytes: number }[] }>('GET', `/vaults/demo/replications/${machine}/points`)).items;

  return {
    dir,
    server,
    api,
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

export async function waitFor(probe: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
