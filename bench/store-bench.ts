import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { applyChurn, writeStandardImage } from './standard-image.js';

/**
 * Refuge's replica store against restic and borg on the standard image, in one run (bench/run.sh):
 * seeding, incremental after 1% churn, and restore of the incremental point to a raw image. Each tool runs as
 * its own command line (Refuge as `refuge store import/restore`), timed from outside with its peak RSS read by
 * GNU time. Every restore is checked byte for byte against the image. Medians of --runs runs; results go to
 * bench/results/ as JSON and to stdout as the markdown table of docs/benchmarks.md.
 */

const { values: opt } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '2048' },
    runs: { type: 'string', default: '3' },
    dir: { type: 'string', default: '/var/tmp/refuge-bench' },
    'chunk-sizes': { type: 'string', default: '' },
    tools: { type: 'string', default: 'refuge,refuge-encrypted,restic,borg' },
  },
});
const sizeMiB = Number(opt['size-mib']);
const runs = Number(opt.runs);
const dir = resolve(opt.dir);
const root = resolve(import.meta.dirname, '..');
const refugeBin = join(root, 'bin', 'refuge.js');

interface Measure {
  seconds: number;
  /** CPU seconds (user + system) of the command and its threads: less sensitive than wall time to a busy machine. */
  cpuSeconds: number;
  maxRssMiB: number;
}

async function run(cmd: string, args: string[], o: { env?: Record<string, string>; cwd?: string } = {}): Promise<Measure> {
  const timeFile = join(dir, 'time.out');
  const started = process.hrtime.bigint();
  const code = await new Promise<number | null>((done, fail) => {
    const child = spawn('/usr/bin/time', ['-f', '%M %U %S', '-o', timeFile, cmd, ...args], { cwd: o.cwd ?? dir, env: { ...process.env, ...o.env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', fail);
    child.once('exit', (c) => (c === 0 ? done(c) : fail(new Error(`${cmd} ${args.join(' ')} exited ${c}: ${err.slice(-2000)}`))));
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  void code;
  const [rssKiB, user, system] = ((await readFile(timeFile, 'utf8')).trim().split('\n').at(-1) ?? '').split(' ').map(Number) as [number, number, number];
  return { seconds, cpuSeconds: user + system, maxRssMiB: rssKiB / 1024 };
}

async function sh(cmd: string, args: string[], cwd = dir): Promise<void> {
  await new Promise<void>((done, fail) => {
    const child = spawn(cmd, args, { cwd, stdio: 'ignore' });
    child.once('error', fail);
    child.once('exit', (c) => (c === 0 ? done() : fail(new Error(`${cmd} exited ${c}`))));
  });
}

/**
 * Brings the machine to the same state before every timed step of every tool: `sync`, then wait (at most 30 s)
 * until the kernel's dirty and writeback pages are below 64 MiB. Without it a tool starts while the gigabytes the
 * previous step left in the page cache are being written back, and its writes are throttled
 * (balance_dirty_pages) for work that is not its own: run-to-run wall times varied 2x on a quiet machine.
 */
async function quiesce(): Promise<void> {
  await sh('sync', []);
  const pending = async () => {
    const info = await readFile('/proc/meminfo', 'utf8');
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    return (kib('Dirty') + kib('Writeback')) * 1024;
  };
  for (const deadline = Date.now() + 30_000; Date.now() < deadline && (await pending()) > 64 * 1024 * 1024; ) {
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function treeBytes(path: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(path, { recursive: true, withFileTypes: true })) if (e.isFile()) n += (await stat(join(e.parentPath, e.name))).size;
  return n;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 8 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

interface Tool {
  name: string;
  init(repo: string): Promise<void>;
  backup(repo: string, image: string, n: number): Promise<Measure>;
  /** Restores the latest backup; returns the time and the restored image's path. */
  restore(repo: string, out: string, image: string): Promise<{ m: Measure; path: string }>;
}

const PASSWORD = 'refuge-bench-password';

function refuge(name: string, o: { encrypted: boolean; chunkSize?: number; sync?: boolean; format?: number }): Tool {
  const keyFile = join(dir, 'vault.key');
  const keyArgs = o.encrypted ? ['--key-file', keyFile] : [];
  return {
    name,
    async init(repo) {
      if (o.encrypted) await writeFile(keyFile, createHash('sha256').update('bench key').digest('hex'));
      await run(process.execPath, [refugeBin, 'store', 'init', '--path', repo, ...keyArgs, ...(o.encrypted ? ['--encrypt'] : []), ...(o.chunkSize ? ['--chunk-size', String(o.chunkSize)] : []), ...(o.format ? ['--format', String(o.format)] : [])]);
    },
    backup: (repo, image) => run(process.execPath, [refugeBin, 'store', 'import', '--path', repo, ...keyArgs, '--replication', 'rep_bench', '--disk', `disk0=${image}`]),
    async restore(repo, out) {
      const path = join(out, 'disk0.raw');
      await mkdir(out, { recursive: true });
      const m = await run(process.execPath, [refugeBin, 'store', 'restore', '--path', repo, ...keyArgs, '--replication', 'rep_bench', '--point', 'latest', '--disk', 'disk0', '--out', path, ...(o.sync === false ? ['--no-sync'] : [])]);
      return { m, path };
    },
  };
}

const resticEnv = () => ({ RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(dir, 'restic-cache') });
const restic: Tool = {
  name: 'restic',
  init: (repo) => run('restic', ['init', '--repository-version', '2', '-r', repo], { env: resticEnv() }).then(() => undefined),
  backup: (repo, image) => run('restic', ['-r', repo, 'backup', '--host', 'bench', image], { env: resticEnv() }),
  async restore(repo, out, image) {
    const m = await run('restic', ['-r', repo, 'restore', 'latest', '--target', out], { env: resticEnv() });
    return { m, path: join(out, image) };
  },
};

const borgEnv = () => ({ BORG_PASSPHRASE: PASSWORD, BORG_BASE_DIR: join(dir, 'borg-base'), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' });
const borg: Tool = {
  name: 'borg',
  init: (repo) => run('borg', ['init', '-e', 'none', repo], { env: borgEnv() }).then(() => undefined),
  backup: (repo, image, n) => run('borg', ['create', '--compression', 'zstd,3', `${repo}::b${n}`, image], { env: borgEnv() }),
  async restore(repo, out, image) {
    await mkdir(out, { recursive: true });
    const m = await run('borg', ['extract', '--sparse', `${repo}::b1`], { env: borgEnv(), cwd: out });
    return { m, path: join(out, image.replace(/^\//, '')) };
  },
};

interface RunResult {
  seed: Measure;
  incremental: Measure;
  restore: Measure;
  seedRepoBytes: number;
  incrementalRepoBytes: number;
}

async function measureTool(tool: Tool, original: string, k: number): Promise<RunResult> {
  const work = join(dir, 'work.raw');
  const repo = join(dir, `repo-${tool.name}`);
  const out = join(dir, `out-${tool.name}`);
  await rm(repo, { recursive: true, force: true });
  await rm(out, { recursive: true, force: true });
  await copyFile(original, work);
  await tool.init(repo);
  await quiesce();
  const seed = await tool.backup(repo, work, 0);
  await quiesce();
  const seedRepoBytes = await treeBytes(repo);
  await applyChurn(work, sizeMiB, `churn-${k}`);
  await quiesce();
  const incremental = await tool.backup(repo, work, 1);
  await quiesce();
  const incrementalRepoBytes = await treeBytes(repo);
  const { m: restore, path } = await tool.restore(repo, out, work);
  if ((await sha256File(path)) !== (await sha256File(work))) throw new Error(`${tool.name}: restored image differs from the source`);
  await rm(out, { recursive: true, force: true });
  await rm(repo, { recursive: true, force: true });
  return { seed, incremental, restore, seedRepoBytes, incrementalRepoBytes };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

function summarize(results: RunResult[]) {
  const pick = (f: (r: RunResult) => number) => median(results.map(f));
  return {
    seedSeconds: pick((r) => r.seed.seconds),
    seedCpu: pick((r) => r.seed.cpuSeconds),
    incrementalCpu: pick((r) => r.incremental.cpuSeconds),
    restoreCpu: pick((r) => r.restore.cpuSeconds),
    seedRssMiB: Math.max(...results.map((r) => r.seed.maxRssMiB)),
    incrementalSeconds: pick((r) => r.incremental.seconds),
    incrementalRssMiB: Math.max(...results.map((r) => r.incremental.maxRssMiB)),
    restoreSeconds: pick((r) => r.restore.seconds),
    restoreRssMiB: Math.max(...results.map((r) => r.restore.maxRssMiB)),
    seedRepoBytes: pick((r) => r.seedRepoBytes),
    incrementalBytes: pick((r) => r.incrementalRepoBytes - r.seedRepoBytes),
    runs: results.map((r) => ({ seed: r.seed.seconds, incremental: r.incremental.seconds, restore: r.restore.seconds, cpu: [r.seed.cpuSeconds, r.incremental.cpuSeconds, r.restore.cpuSeconds] })),
  };
}

async function main(): Promise<void> {
  await mkdir(dir, { recursive: true });
  const original = join(dir, `standard-${sizeMiB}m.raw`);
  if (!(await stat(original).catch(() => null))) {
    process.stdout.write(`building the standard image (${sizeMiB} MiB) at ${original}\n`);
    await writeStandardImage(original, sizeMiB);
  }
  const wanted = opt.tools.split(',');
  const tools = [
    refuge('refuge', { encrypted: false }),
    refuge('refuge-encrypted', { encrypted: true }),
    refuge('refuge-nosync', { encrypted: false, sync: false }),
    // Store format 3 (blobs named by 16 KiB leaf digests, docs/design-delta-points.md): what its hashing costs.
    refuge('refuge-format3', { encrypted: false, format: 3 }),
    restic,
    borg,
  ].filter((t) => wanted.includes(t.name));
  const chunkSizes = opt['chunk-sizes'] ? opt['chunk-sizes'].split(',').map(Number) : [];
  for (const cs of chunkSizes) tools.push(refuge(`refuge-chunk-${cs / 1024}k`, { encrypted: false, chunkSize: cs }));
  const raw = new Map<string, RunResult[]>(tools.map((t) => [t.name, []]));
  // Tools take turns within each run, so a slow moment of this shared machine hits them alike.
  for (let k = 0; k < runs; k++) {
    for (const tool of tools) {
      process.stdout.write(`run ${k + 1}/${runs}: ${tool.name} ... `);
      const r = await measureTool(tool, original, k);
      (raw.get(tool.name) as RunResult[]).push(r);
      process.stdout.write(`seed ${r.seed.seconds.toFixed(2)} s, incremental ${r.incremental.seconds.toFixed(2)} s, restore ${r.restore.seconds.toFixed(2)} s (load ${(await readFile('/proc/loadavg', 'utf8')).split(' ')[0]})\n`);
    }
  }
  const summary = Object.fromEntries([...raw].map(([name, rs]) => [name, summarize(rs)]));
  const results = { date: new Date().toISOString(), sizeMiB, runs, summary };
  await mkdir(join(root, 'bench', 'results'), { recursive: true });
  await writeFile(join(root, 'bench', 'results', `store-${results.date.replace(/[:.]/g, '-')}.json`), JSON.stringify(results, null, 2));
  printTable(summary);
}

function printTable(summary: Record<string, ReturnType<typeof summarize>>): void {
  const mb = sizeMiB * 1048576;
  const base = summary.restic;
  const lines = [
    '| tool | seed s | seed MB/s | vs restic | repo MB | incr. s | vs restic | incr. stored MB | restore s | vs restic | peak RSS MiB (seed/incr/restore) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [name, s] of Object.entries(summary)) {
    const ratio = (b: number | undefined, x: number) => (b ? `${(b / x).toFixed(2)}x` : '-');
    lines.push(
      `| ${name} | ${s.seedSeconds.toFixed(2)} | ${(mb / s.seedSeconds / 1e6).toFixed(0)} | ${ratio(base?.seedSeconds, s.seedSeconds)} | ${(s.seedRepoBytes / 1e6).toFixed(0)} | ${s.incrementalSeconds.toFixed(2)} | ${ratio(base?.incrementalSeconds, s.incrementalSeconds)} | ${(s.incrementalBytes / 1e6).toFixed(1)} | ${s.restoreSeconds.toFixed(2)} | ${ratio(base?.restoreSeconds, s.restoreSeconds)} | ${s.seedRssMiB.toFixed(0)}/${s.incrementalRssMiB.toFixed(0)}/${s.restoreRssMiB.toFixed(0)} |`,
    );
  }
  lines.push('', '| tool | CPU s seed | vs restic | CPU s incr. | vs restic | CPU s restore | vs restic |', '|---|---|---|---|---|---|---|');
  for (const [name, s] of Object.entries(summary)) {
    const ratio = (b: number | undefined, x: number) => (b ? `${(b / x).toFixed(2)}x` : '-');
    lines.push(`| ${name} | ${s.seedCpu.toFixed(2)} | ${ratio(base?.seedCpu, s.seedCpu)} | ${s.incrementalCpu.toFixed(2)} | ${ratio(base?.incrementalCpu, s.incrementalCpu)} | ${s.restoreCpu.toFixed(2)} | ${ratio(base?.restoreCpu, s.restoreCpu)} |`);
  }
  process.stdout.write(`\n${lines.join('\n')}\n`);
}

await main();
