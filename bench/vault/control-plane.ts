/**
 * P10 and P11 (docs/performance.md): the control plane under 1,000 replications with 100 agents heartbeating every
 * 10 s, and 10,000 replications on PostgreSQL. A real `refuge vault` process (HTTPS, tokens, SQLite or PostgreSQL);
 * each agent registers for its own client certificate and heartbeats over mutual TLS;
 * this process seeds the database, drives the agents' heartbeats and times API list calls. Reports p50/p99 of
 * the list calls and heartbeats, and the vault's peak RSS. Run: bench/vault/run.sh (see docs/benchmarks.md).
 */
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initVault } from '../../src/api/vault-init.js';
import { spawnRefuge, stopChild, waitForOutput } from '../../src/cli/quickstart/children.js';
import { requestJson, requestText, type HttpConnection } from '../../src/core/http-client.js';
import { newId } from '../../src/core/ids.js';
import { openSiteStore } from '../../src/store/open-store.js';
import { openDatabase } from '../../src/vault/db/connect.js';
import { createRepositories } from '../../src/vault/repositories/index.js';
import { register, type Identity } from '../../src/protocol/identity.js';
import type { RegistrationKeyResponse } from '../../src/protocol/enrollment.js';
import { createTestDatabase } from '../../test/helpers/databases.js';
import { testCertificate } from '../../test/helpers/test-vault.js';

const { values } = parseArgs({
  options: {
    replications: { type: 'string', default: '1000' },
    agents: { type: 'string', default: '100' },
    db: { type: 'string', default: 'sqlite' },
    seconds: { type: 'string', default: '30' },
    lists: { type: 'string', default: '300' },
  },
});
const N = Number(values.replications);
const AGENTS = Number(values.agents);
const kind = values.db === 'postgres' ? 'postgres' : 'sqlite';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
};
const ms = (x: number) => Number(x.toFixed(1));

async function seed(url: string): Promise<void> {
  const db = await openDatabase(url);
  const repos = createRepositories(db);
  const vault = await repos.vaults.create('bench');
  const config = (name: string) => ({ workDir: `/tmp/refuge-bench/${name}`, disksDir: `/tmp/refuge-bench/${name}/disks`, store: { kind: 'filesystem' as const, path: `/tmp/refuge-bench/${name}/store` } });
  const primary = await repos.sites.create({ vaultId: vault.id, name: 'primary', provider: 'qemu', config: config('primary'), capacity: { vcpus: 100_000, memoryMiB: 100_000_000, diskGiB: 1_000_000 } });
  const recovery = await repos.sites.create({ vaultId: vault.id, name: 'recovery', provider: 'qemu', config: config('recovery'), capacity: { vcpus: 100_000, memoryMiB: 100_000_000, diskGiB: 1_000_000 } });
  await repos.vaults.setLocation(vault.id, recovery.id);
  // The stores exist before points are recorded in them: the vault refuses to create a store anew under recorded
  // points (a missing store is an unmounted volume, not an empty one). Their points are records only, as the
  // benchmark lists and heartbeats, and never reads a point.
  for (const name of ['primary', 'recovery']) await (await openSiteStore(config(name).store)).close();
  const policy = await repos.policies.create({ vaultId: vault.id, name: 'default', crashIntervalSeconds: 300, retentionHours: 24, rpoThresholdSeconds: 900 });
  for (let i = 0; i < N; i++) {
    const name = `vm${String(i).padStart(5, '0')}`;
    const m = await repos.machines.register(vault.id, primary.id, '0.1.0', { name, hostname: name, os: 'linux', cpus: 2, memoryMiB: 2048, disks: [{ name: 'disk0', sizeBytes: 20 * 1024 ** 3 }], boot: { kind: 'disk' } });
    const rep = await repos.replications.create({ vaultId: vault.id, name, machineId: m.id, policyId: policy.id, sourceSiteId: primary.id, targetSiteId: recovery.id });
    const at = new Date(Date.now() - 60_000).toISOString();
    await repos.replications.recordPoint({ id: newId('pt'), replicationId: rep.id, parentId: null, capturedAt: at, committedAt: at, consistency: 'crash', changedBytes: 1 << 20, storedBytes: 1 << 20 });
  }
  await db.destroy();
}

async function main(): Promise<void> {
  const database = await createTestDatabase(kind);
  const dir = await mkdtemp(join(tmpdir(), 'refuge-bench-'));
  let child: ReturnType<typeof spawnRefuge> | undefined;
  try {
    const init = await initVault({ dataDir: dir, databaseUrl: database.url, certificate: testCertificate() });
    const owner: HttpConnection = { token: init.credentials.token, ca: init.credentials.ca };
    const seedStart = Date.now();
    await seed(database.url);
    const seedSeconds = (Date.now() - seedStart) / 1000;
    child = spawnRefuge(['vault', '--data', dir, '--database', database.url, '--listen', '127.0.0.1:0'], join(dir, 'vault.log'));
    const url = (await waitForOutput(child, /vault listening on (\S+)/, 60_000, join(dir, 'vault.log')))[1] as string;
    const api = (path: string) => requestJson<{ items: unknown[]; nextCursor: string | null }>('GET', `${url}/api/v1${path}`, { connection: owner });
    await api('/vaults/bench/replications?limit=10'); // warm up connections and caches

    // Each simulated agent registers as a real one does (one-time key, its own key pair, a vault-issued client
    // certificate) and heartbeats over mutual TLS with that certificate, on its own connection.
    const identities: Identity[] = [];
    for (let a = 0; a < AGENTS; a++) {
      const k = await requestJson<RegistrationKeyResponse>('POST', `${url}/api/v1/vaults/bench/agents/keys`, { connection: owner, body: {} });
      const machine = `vm${String(a).padStart(5, '0')}`;
      const creds = { url, vault: 'bench', caFingerprint256: k.caFingerprint256, registrationKey: k.key };
      identities.push(await register(creds, { kind: 'machine', site: 'primary', machine }, join(dir, 'agents', machine)));
    }

    // 100 agents, each heartbeating every 10 s, staggered over the interval.
    const heartbeats: number[] = [];
    let stop = false;
    const agents = Array.from({ length: AGENTS }, async (_, a) => {
      await new Promise((r) => setTimeout(r, (a * 10_000) / AGENTS));
      while (!stop) {
        const t = performance.now();
        await requestJson('POST', `${url}/api/v1/vaults/bench/agents/vm${String(a).padStart(5, '0')}/heartbeat`, { connection: (identities[a] as Identity).connection, body: { agentVersion: '0.1.0', sentAt: new Date().toISOString(), progress: { phase: 'idle', doneBytes: 0, totalBytes: 0, pendingBytes: 0 } } });
        heartbeats.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 10_000));
      }
    });

    const timeList = async (path: string, count: number) => {
      const times: number[] = [];
      for (let i = 0; i < count; i++) {
        const t = performance.now();
        const r = await api(path);
        times.push(performance.now() - t);
        if (r.items.length === 0) throw new Error(`empty list from ${path}`);
      }
      return times;
    };
    const deadline = Date.now() + Number(values.seconds) * 1000;
    const page100: number[] = [];
    const page1000: number[] = [];
    const pageLast: number[] = [];
    const lastCursor = `vm${String(N - 51).padStart(5, '0')}`;
    while (Date.now() < deadline || page100.length < Number(values.lists)) {
      page100.push(...(await timeList('/vaults/bench/replications?limit=100', 10)));
      page1000.push(...(await timeList('/vaults/bench/replications?limit=1000', 1)));
      pageLast.push(...(await timeList(`/vaults/bench/replications?limit=100&cursor=${lastCursor}`, 2)));
    }
    stop = true;
    await Promise.race([Promise.all(agents), new Promise((r) => setTimeout(r, 11_000))]);
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
    // Where the resident memory is, from the vault's own default metrics (V8 heap in use and reserved, off-heap).
    const metrics = await requestText(`${url}/metrics`, { connection: owner });
    const gauge = (name: string) => Math.round(Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN) / 2 ** 20);
    const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
    const result = {
      db: kind,
      replications: N,
      agents: AGENTS,
      seedSeconds,
      list100: { n: page100.length, p50: ms(pct(page100, 50)), p99: ms(pct(page100, 99)) },
      listLastPage: { n: pageLast.length, p50: ms(pct(pageLast, 50)), p99: ms(pct(pageLast, 99)) },
      list1000: { n: page1000.length, p50: ms(pct(page1000, 50)), p99: ms(pct(page1000, 99)) },
      heartbeat: { n: heartbeats.length, p50: ms(pct(heartbeats, 50)), p99: ms(pct(heartbeats, 99)) },
      vaultRssMiB: Math.round(kib('VmRSS') / 1024),
      vaultHeapUsedMiB: gauge('nodejs_heap_size_used_bytes'),
      vaultHeapTotalMiB: gauge('nodejs_heap_size_total_bytes'),
      vaultExternalMiB: gauge('nodejs_external_memory_bytes'),
      vaultPeakRssMiB: Math.round(kib('VmHWM') / 1024),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    if (child) await stopChild(child);
    await database.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
