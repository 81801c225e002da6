import { writeRegistration } from './registration.js';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnRefuge, waitForOutput } from '../../src/cli/quickstart/children.js';
import { requestJson, type HttpConnection } from '../../src/core/http-client.js';
import { FilesystemBackend } from '../../src/store/backends/filesystem.js';
import { DEFAULT_CHUNK_SIZE } from '../../src/store/chunks.js';
import { ReplicaStore } from '../../src/store/replica-store.js';
import { verifyStore } from '../../src/store/verify.js';
import type { JobView } from '../../src/vault/jobs/definitions.js';
import { initTestVault } from './vault-process.js';

const MiB = 1024 * 1024;
const CHUNK = DEFAULT_CHUNK_SIZE;
const DISK = 32 * MiB;

export type Target = 'agent' | 'replicator' | 'vault';
export type Phase = 'seeding' | 'incremental' | 'commit' | 'prune' | 'gc' | 'failover';

export interface KillRecord {
  n: number;
  phase: Phase;
  killed: string[];
  delayMs: number;
  recoverySeconds: number;
  changedBytes: number;
  shippedBytes: number;
  fullResync: boolean;
  problems: string[];
  job?: string;
}

/** A small deterministic PRNG (mulberry32), so a failing run is replayed with its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

/**
 * Reliability R1: real `refuge vault`, `refuge replicator` and `refuge agent` processes (and `refuge store prune` /
 * `gc`), one of them killed with SIGKILL at a random moment of each phase: the initial seeding, incremental points,
 * point commits, pruning, garbage collection and test failover jobs. After each kill the process is restarted and
 * the harness waits until a committed point holds the image's current bytes, then checks: the store verifies clean
 * (no corrupt or half-visible point), what was shipped is what changed (no full resync), and an interrupted job
 * ended cleanly (succeeded on the point's exact bytes, or failed with a reason).
 */
export async function runKillNine(o: { points: number; seed: number; log?: (line: string) => void }): Promise<{ records: KillRecord[]; dir: string; cleanup(): Promise<void> }> {
  const random = prng(o.seed);
  const dir = await mkdtemp(join(tmpdir(), 'rproving-kill-'));
  const dataDir = join(dir, 'vault');
  const image = join(dir, 'disk0.raw');
  const storeDir = join(dataDir, 'sites', 'recovery', 'store');
  const { credentials } = await initTestVault(undefined, dataDir);
  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  const owner: HttpConnection = { token: credentials.token, ca: credentials.ca };
  const api = <T>(method: string, path: string, body?: unknown) => requestJson<T>(method, `${url}/api/v1${path}`, { connection: owner, ...(body === undefined ? {} : { body }) });
  const children = new Set<ChildProcess>();
  const procs: Partial<Record<Target, ChildProcess>> = {};

  const spawnChild = async (name: Target, args: string[], ready: RegExp) => {
    const child = spawnRefuge(args, join(dir, `${name}.log`));
    children.add(child);
    void exited(child).then(() => children.delete(child));
    if (name !== 'agent') await waitForOutput(child, ready, 60_000, join(dir, `${name}.log`));
    procs[name] = child;
  };
  const agentCredentials = join(dir, 'agent-registration.json');
  const replicatorCredentials = join(dir, 'replicator-registration.json');
  const start: Record<Target, () => Promise<void>> = {
    vault: () => spawnChild('vault', ['vault', '--data', dataDir, '--listen', `127.0.0.1:${port}`], /vault listening on/),
    replicator: () => spawnChild('replicator', ['--credentials', replicatorCredentials, '--vault', 'demo', 'replicator', '--site', 'recovery', '--state-dir', join(dir, 'replicator')], /replicator listening on/),
    agent: () => spawnChild('agent', ['--credentials', agentCredentials, '--vault', 'demo', 'agent', '--site', 'primary', '--name', 'vm1', '--disk', `disk0=${image}`, '--capture', 'scan', '--state-dir', join(dir, 'agent'), '--heartbeat', '1s', '--bandwidth', '6MB/s'], /$^/),
  };
  const kill = async (name: Target) => {
    const c = procs[name];
    if (!c) return;
    c.kill('SIGKILL');
    await exited(c);
    delete procs[name];
  };
  /** Retries an API call while the vault restarts. */
  const retry = async <T>(call: () => Promise<T>, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await call();
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  };

  // The image: incompressible data in three quarters of it, so a full resync would show as ~24 MiB shipped.
  const disk = Buffer.alloc(DISK);
  randomBytes(24 * MiB).copy(disk, 4 * MiB);
  await writeFile(image, disk);
  const writeRandom = async (bytes: number): Promise<number> => {
    const f = await open(image, 'r+');
    const chunks = new Set<number>();
    for (let left = bytes; left > 0; ) {
      const length = Math.min(left, 1 + Math.floor(random() * 2 * CHUNK));
      const offset = Math.floor(random() * (DISK - length));
      await f.write(randomBytes(length), 0, length, offset);
      for (let c = Math.floor(offset / CHUNK); c <= Math.floor((offset + length - 1) / CHUNK); c++) chunks.add(c);
      left -= length;
    }
    await f.close();
    return chunks.size * CHUNK;
  };

  /**
   * Chunk bytes the replicators received, per commit, as they logged them (`point committed`, wireBytes: every upload
   * since that process's previous commit, those of abandoned cuts included): the vault's own and the standalone one.
   */
  const receivedLogs = ['vault.log', 'replicator.log'];
  const committedWire = async (): Promise<number[][]> =>
    Promise.all(receivedLogs.map(async (name) =>
      (await readFile(join(dir, name), 'utf8').catch(() => ''))
        .split('\n')
        .filter((l) => l.startsWith('{') && l.includes('"point committed"'))
        .map((l) => (JSON.parse(l) as { wireBytes?: number }).wireBytes ?? 0),
    ));

  /** Waits for a committed point holding the image's bytes; returns when it was seen. */
  let replicationId = '';
  const caughtUp = async (timeoutMs = 120_000) => {
    const want = await readFile(image);
    const deadline = Date.now() + timeoutMs;
    const checked = new Set<string>();
    for (;;) {
      const points = await retry(() => api<{ items: { id: string }[] }>('GET', '/vaults/demo/replications/vm1/points?limit=5')).catch(() => ({ items: [] }));
      for (const p of points.items.slice(0, 2)) {
        if (checked.has(p.id)) continue;
        checked.add(p.id);
        const store = await ReplicaStore.open(new FilesystemBackend(storeDir));
        // The `refuge store prune` this harness runs on the store directly removes points the vault still lists
        // (an operator's prune behind the vault's back); those are not candidates, a later point is.
        if (!(await store.listPointIds(replicationId)).includes(p.id)) continue;
        const got = await store.readRange(await store.getPoint(replicationId, p.id), 'disk0', 0, DISK);
        if (got.equals(want)) return;
      }
      if (Date.now() > deadline) throw new Error(`no point holding the image's bytes within ${timeoutMs / 1000} s; see ${dir}`);
      await sleep(200);
    }
  };
  const verify = async (): Promise<string[]> => (await verifyStore(await ReplicaStore.open(new FilesystemBackend(storeDir)))).problems.map((p) => `${p.object}: ${p.problem}`);

  const cleanup = async () => {
    for (const c of [...children]) {
      c.kill('SIGKILL');
      await exited(c);
    }
    // Test failovers may have left daemonized qemu processes (a job that failed): their pid files are in the data folder.
    for (const pidFile of await findPidFiles(dataDir)) {
      const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    await rm(dir, { recursive: true, force: true });
  };

  const records: KillRecord[] = [];
  try {
    await start.vault();
    await api('POST', '/vaults', { name: 'demo' });
    await api('POST', '/vaults/demo/sites', { name: 'primary' });
    await api('POST', '/vaults/demo/sites', { name: 'recovery' });
    await api('POST', '/vaults/demo/policies', { name: 'default', crashIntervalSeconds: 1 });
    await writeRegistration(api, url, agentCredentials);
    await writeRegistration(api, url, replicatorCredentials);
    await start.replicator();
    await start.agent();
    await retry(async () => {
      if ((await api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length !== 1) throw new Error('not registered');
    });
    replicationId = (await api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' })).id;

    const targets: Target[] = ['agent', 'replicator', 'vault'];
    const later: Phase[] = ['incremental', 'commit', 'prune', 'gc', 'failover'];
    for (let n = 0; n < o.points; n++) {
      const phase: Phase = n < 3 ? 'seeding' : (later[(n - 3) % later.length] as Phase);
      const target = phase === 'failover' ? 'vault' : (targets[n % targets.length] as Target);
      const wireBefore = (await committedWire()).map((xs) => xs.length);
      let changedBytes = phase === 'seeding' ? 24 * MiB : 0;
      let delayMs = 0;
      const killed: string[] = [];
      let jobId: string | undefined;
      let storeCommand: ChildProcess | undefined;
      if (phase === 'incremental') changedBytes = await writeRandom(Math.floor((1 + random() * 4) * MiB));
      if (phase === 'commit') changedBytes = await writeRandom(1 + Math.floor(random() * CHUNK));
      if (phase === 'prune' || phase === 'gc') {
        changedBytes = await writeRandom(Math.floor((0.5 + random()) * MiB));
        const args = phase === 'prune' ? ['prune', '--replication', replicationId, '--retention', '10s'] : ['gc', '--grace', '0s'];
        storeCommand = spawnRefuge(['store', ...args, '--path', storeDir], join(dir, `${phase}.log`));
        children.add(storeCommand);
      }
      if (phase === 'failover') jobId = (await retry(() => api<JobView>('POST', '/vaults/demo/replications/vm1/test-failover', { point: 'latest' }))).id;
      // Seeding kills land within the seed's first seconds; the others within the next cut or the command's run.
      delayMs = phase === 'seeding' ? 300 + Math.floor(random() * 1200) : Math.floor(random() * (phase === 'failover' ? 2000 : 1500));
      await sleep(delayMs);
      if (storeCommand) {
        storeCommand.kill('SIGKILL');
        await exited(storeCommand);
        killed.push(`store ${phase}`);
      }
      await kill(target);
      killed.push(target);
      const restartedAt = Date.now();
      await start[target]();
      if (jobId) {
        const id = jobId;
        const job = await retry(async () => {
          const j = await api<JobView>('GET', `/vaults/demo/jobs/${id}`);
          if (j.state === 'queued' || j.state === 'running') throw new Error(`job ${id} is ${j.state}`);
          return j;
        }, 180_000);
        jobId = `${job.state}${job.error ? `: ${job.error.message}` : ''}`;
        if (job.state === 'succeeded') {
          const store = await ReplicaStore.open(new FilesystemBackend(storeDir));
          const point = await store.getPoint(replicationId, job.result.pointId as string);
          const recovered = await readFile((job.result.disks as string[])[0] as string);
          if (!recovered.equals(await store.readRange(point, 'disk0', 0, DISK))) throw new Error(`test failover ${id} recovered other bytes than its point`);
          const cleanupJob = await retry(() => api<JobView>('POST', '/vaults/demo/replications/vm1/test-failover-cleanup'));
          await retry(async () => {
            const j = await api<JobView>('GET', `/vaults/demo/jobs/${cleanupJob.id}`);
            if (j.state !== 'succeeded') throw new Error(`cleanup ${j.state}`);
          }, 120_000);
        } else if (job.state !== 'failed' || !job.error?.message) {
          throw new Error(`test failover ${id} ended ${job.state} without a clean failure`);
        }
      }
      // The three seeding kills land in one seed (the agent ships at 6 MB/s): only the last waits for it to finish.
      if (phase !== 'seeding' || n === 2) await caughtUp();
      const recoverySeconds = (Date.now() - restartedAt) / 1000;
      const shippedBytes = (await committedWire()).flatMap((xs, i) => xs.slice(wireBefore[i])).reduce((a, b) => a + b, 0);
      const problems = await verify();
      const record: KillRecord = {
        n, phase, killed, delayMs, recoverySeconds, changedBytes, shippedBytes, problems,
        // Shipping more than what changed (plus two chunks of slack per point for chunks cut mid-write) is a resync.
        fullResync: phase !== 'seeding' && shippedBytes > changedBytes + 2 * CHUNK,
        ...(jobId ? { job: jobId } : {}),
      };
      records.push(record);
      o.log?.(JSON.stringify(record));
    }
  } catch (err) {
    // REFUGE_KEEP_FAILED=1 keeps the logs and the store of a failed run for a post-mortem.
    if (process.env.REFUGE_KEEP_FAILED === '1') for (const c of [...children]) c.kill('SIGKILL');
    else await cleanup().catch(() => undefined);
    throw err;
  }
  return { records, dir, cleanup };
}

async function findPidFiles(root: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile() && e.name === 'qemu.pid').map((e) => join(e.parentPath, e.name));
}
