import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, rm } from 'node:fs/promises';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startBenchVault } from './bench-vault.js';
import type { StoreFormat } from '../../src/store/store-config.js';
import { stop, unitLaunch } from './measure.js';
import { ensureStandardImage } from './standard-image.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

export interface RpoResult {
  samples: number[];
  p50: number;
  p99: number;
  max: number;
  points: number;
  intervalSeconds: number;
  /** The policy's chunk size (KiB); undefined: the store's default. */
  chunkSizeKiB?: number;
  storeFormat?: StoreFormat;
  seedSeconds: number;
  writtenMB: number;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;

/**
 * P5: RPO under sustained 20 MB/s of random 8 KiB writes to one disk, with the real processes: `refuge vault` and
 * `refuge agent --capture cdp` on the standard image, fio writing through the agent's NBD export at a fixed rate,
 * and the replication's RPO (age of the latest point, as the vault reports it) sampled twice a second once the load
 * has run for `warmupSeconds`.
 */
export async function benchRpo(dir: string, sizeBytes: number, o: { seconds: number; warmupSeconds: number; intervalSeconds: number; chunkSizeKiB?: number; storeFormat?: StoreFormat; say: (s: string) => void }): Promise<RpoResult> {
  const image = join(dir, 'p5.raw');
  await rm(image, { force: true });
  for (const d of ['p5-vault', 'p5-agent', 'p5-registration.json']) await rm(join(dir, d), { recursive: true, force: true });
  await ensureStandardImage(image, sizeBytes);
  // BENCH_PROFILE=DIR: both processes run under `node --cpu-prof` (profiles written to DIR when they exit).
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const vault = await startBenchVault(join(dir, 'p5-vault'), { crashIntervalSeconds: o.intervalSeconds, nodeArgs: profile, ...(o.chunkSizeKiB ? { chunkSizeKiB: o.chunkSizeKiB } : {}), ...(o.storeFormat ? { storeFormat: o.storeFormat } : {}) });
  const api = vault.api;
  let agent: ChildProcess | undefined;
  try {
    const credentials = await vault.writeRegistration(join(dir, 'p5-registration.json'));
    // The agent logs to stderr and prints nothing when ready: it is ready once its NBD socket exists.
    const unit = await unitLaunch(); // the agent as the systemd unit runs it
    // BENCH_AGENT_LOG=FILE: the agent's log at level info there (each point's phases: cutMs, shipMs, commitMs, saveMs).
    agent = spawn(process.execPath, [
      ...unit.nodeFlags, ...profile, join(root, 'bin', 'refuge.js'), '--credentials', credentials, 'agent', '--site', 'primary', '--name', 'vm',
      '--disk', `disk0=${image}`, '--capture', 'cdp', '--state-dir', join(dir, 'p5-agent'), '--heartbeat', '1s',
    ], { stdio: ['ignore', 'ignore', process.env.BENCH_AGENT_LOG ? openSync(process.env.BENCH_AGENT_LOG, 'w') : 'ignore'], env: { ...process.env, ...unit.env, REFUGE_LOG_LEVEL: process.env.BENCH_AGENT_LOG ? 'info' : 'warn' } });
    const socket = join(dir, 'p5-agent', 'nbd', 'disk0.sock');
    for (let i = 0; !(await access(socket).then(() => true, () => false)); i++) {
      if (i > 300) throw new Error('the agent did not open its NBD socket');
      await new Promise((r) => setTimeout(r, 100));
    }
    for (let i = 0; ; i++) {
      if ((await api<{ items: unknown[] }>('GET', '/vaults/bench/machines')).items.length > 0) break;
      if (i > 300) throw new Error('the agent did not register');
      await new Promise((r) => setTimeout(r, 100));
    }
    await api('POST', '/vaults/bench/replications', { machine: 'vm', policy: 'p', targetSite: 'recovery' });
    const replication = () => api<{ state: string; rpo: { seconds: number } | null }>('GET', '/vaults/bench/replications/vm');
    const seeding = Date.now();
    while ((await replication()).state !== 'protected') await new Promise((r) => setTimeout(r, 250));
    const seedSeconds = (Date.now() - seeding) / 1000;
    o.say(`  seeded; writing 20 MB/s of random 8 KiB blocks for ${o.seconds} s, points every ${o.intervalSeconds} s`);
    const load = run('fio', [
      '--name=p5', '--ioengine=nbd', `--uri=nbd+unix:///disk0?socket=${socket}`, '--rw=randwrite', '--bs=8k', '--iodepth=4',
      '--rate=20m', `--size=${sizeBytes}`, '--time_based=1', `--runtime=${o.seconds}`, '--output-format=json',
    ], { maxBuffer: 64 * 1024 * 1024 });
    const samples: number[] = [];
    const started = Date.now();
    let done = false;
    void load.finally(() => (done = true));
    while (!done) {
      await new Promise((r) => setTimeout(r, 500));
      const rpo = (await replication()).rpo?.seconds;
      if (Date.now() - started > o.warmupSeconds * 1000 && rpo !== undefined && !done) samples.push(rpo);
    }
    const { stdout } = await load;
    const written = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { write: { io_bytes: number } }[] }).jobs[0]?.write.io_bytes ?? 0;
    const points = (await api<{ items: { capturedAt: string }[] }>('GET', '/vaults/bench/replications/vm/points?limit=1000')).items.filter((p) => Date.parse(p.capturedAt) > started).length;
    const sorted = [...samples].sort((a, b) => a - b);
    return { samples, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.at(-1) ?? 0, points, intervalSeconds: o.intervalSeconds, writtenMB: written / 1e6, seedSeconds, ...(o.chunkSizeKiB ? { chunkSizeKiB: o.chunkSizeKiB } : {}), ...(o.storeFormat ? { storeFormat: o.storeFormat } : {}) };
  } finally {
    if (agent) await stop(agent);
    await vault.stop();
  }
}
