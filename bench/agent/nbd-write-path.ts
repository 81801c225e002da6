import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { median, startUntil, stop, unitLaunch } from './measure.js';

const run = promisify(execFile);
const GiB = 1024 ** 3;
const root = join(import.meta.dirname, '..', '..');

export interface WritePathResult {
  server: string;
  randIops: number[];
  seqMBps: number[];
}

export const FIO_JOBS = {
  rand: ['--rw=randwrite', '--bs=4k', '--iodepth=16'],
  seq: ['--rw=write', '--bs=1M', '--iodepth=16'],
} as const;

async function fio(uri: string, job: readonly string[], seconds: number): Promise<{ iops: number; bytesPerSecond: number }> {
  const { stdout } = await run('fio', ['--name=p4', '--ioengine=nbd', `--uri=${uri}`, ...job, '--size=1G', '--time_based=1', `--runtime=${seconds}`, '--output-format=json'], { maxBuffer: 64 * 1024 * 1024 });
  const w = (JSON.parse(stdout.slice(stdout.indexOf('{'))) as { jobs: { write: { iops: number; bw_bytes: number } }[] }).jobs[0]?.write;
  return { iops: w?.iops ?? 0, bytesPerSecond: w?.bw_bytes ?? 0 };
}

/** A 1 GiB image with every block allocated (writes to holes would measure the filesystem, not the server). */
async function allocatedImage(path: string): Promise<void> {
  const f = await open(path, 'w');
  const zeros = Buffer.alloc(64 * 1024 * 1024);
  for (let at = 0; at < GiB; at += zeros.length) await f.write(zeros, 0, zeros.length, at);
  await f.close();
}

/**
 * P4: fio's nbd engine against nbdkit's file plugin (the anchor) and against the agent's NBD export with change
 * tracking on (no cut during the run, and a cut every 2 s with the frozen chunks read and hashed), alternating the
 * servers within each round so both see the same machine state. 4 KiB random writes at depth 16 (IOPS) and 1 MiB
 * sequential writes (bandwidth), `seconds` each.
 */
export async function benchWritePath(dir: string, rounds: number, seconds: number, say: (s: string) => void): Promise<WritePathResult[]> {
  // The export runs with the agent's settings as the systemd unit deploys it (its thread pool above all).
  const unit = await unitLaunch();
  const exportProcess = (image: string, sock: string, state: string, cutSeconds: string) =>
    startUntil(process.execPath, [...unit.nodeFlags, '--import', 'tsx', join(root, 'bench/agent/serve-export.ts'), image, sock, join(dir, state), cutSeconds], /ready/, { ...process.env, ...unit.env });
  const servers = [
    { name: 'nbdkit file plugin (anchor)', start: (image: string, sock: string) => startNbdkit(image, sock) },
    { name: 'refuge agent, tracking on', start: (image: string, sock: string) => exportProcess(image, sock, 'state-a', '0') },
    { name: 'refuge agent, tracking on, cut every 2 s', start: (image: string, sock: string) => exportProcess(image, sock, 'state-b', '2') },
  ];
  const results: WritePathResult[] = servers.map((s) => ({ server: s.name, randIops: [], seqMBps: [] }));
  const image = join(dir, 'p4.raw');
  await allocatedImage(image);
  for (let round = 1; round <= rounds; round++) {
    for (const [i, s] of servers.entries()) {
      const sock = join(dir, `p4-${i}.sock`);
      await rm(sock, { force: true });
      const child = await s.start(image, sock);
      try {
        const uri = `nbd+unix:///?socket=${sock}`;
        const r = await fio(uri, FIO_JOBS.rand, seconds);
        const q = await fio(uri, FIO_JOBS.seq, seconds);
        results[i]?.randIops.push(r.iops);
        results[i]?.seqMBps.push(q.bytesPerSecond / 1e6);
        say(`  round ${round} ${s.name}: ${Math.round(r.iops)} IOPS 4 KiB random, ${Math.round(q.bytesPerSecond / 1e6)} MB/s 1 MiB sequential`);
      } finally {
        await stop(child);
      }
    }
  }
  return results;
}

/** nbdkit prints nothing when ready: it is ready once its socket exists. */
async function startNbdkit(image: string, sock: string): Promise<ChildProcess> {
  const child = spawn('nbdkit', ['--foreground', '--unix', sock, 'file', image], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    if (await access(sock).then(() => true, () => false)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`nbdkit did not create ${sock}`);
}

export const summarize = (r: WritePathResult) => ({ randIops: median(r.randIops), seqMBps: median(r.seqMBps) });
