/**
 * P11 (../shared/docs/performance.md): agent memory protecting 1 TiB of sparse disks. One command:
 *
 *   npx tsx bench/agent/memory.ts [--disk-gib 256] [--disks 4] [--data-mib 512] [--steady-seconds 60] [--cut-seconds 30]
 *
 * Two real `refuge agent` processes against a real `refuge vault` (started as the e2e tests start it), each
 * protecting `--disks` sparse images of `--disk-gib` (1 TiB by default) holding `--data-mib` of random data each,
 * in 16 MiB pieces spread over the image: one in cdp mode (fio writes 8 KiB random blocks at 1 MB/s over the first
 * GiB of its first disk, through the NBD export), one in scan mode. Each agent's RSS (VmRSS, /proc/PID/status) is sampled every
 * 250 ms through three phases: the seed (initial replication), steady replication (points every 5 s for cdp, 20 s
 * for scan), and a link cut (the vault stopped with SIGSTOP for `--cut-seconds` while fio keeps writing, then
 * resumed until both agents have committed a point again). The agents run as the packaged systemd unit runs them
 * (packaging/systemd/refuge-agent@.service: its Environment= settings and node's flags); `--launch plain` runs
 * `node bin/refuge.js agent` without them. `--agent-env K=V,K=V` adds to the agents' environment. Printed: per
 * agent and phase the peak sampled RSS, the kernel's peak (VmHWM), and the target (150 MiB).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initTestVault, startVaultProcess, type VaultProcess } from '../../test/helpers/vault-process.js';
import { writeRegistration } from '../../test/helpers/registration.js';
import { stop, unitLaunch } from './measure.js';

const root = join(import.meta.dirname, '..', '..');
const { values } = parseArgs({
  options: {
    'disk-gib': { type: 'string', default: '256' },
    disks: { type: 'string', default: '4' },
    'data-mib': { type: 'string', default: '512' },
    'steady-seconds': { type: 'string', default: '60' },
    'cut-seconds': { type: 'string', default: '30' },
    dir: { type: 'string', default: join(root, 'var', 'bench-agent-memory') },
    /** Environment for the agents, e.g. glibc malloc tuning `MALLOC_ARENA_MAX=2,MALLOC_MMAP_THRESHOLD_=131072`. */
    'agent-env': { type: 'string', default: '' },
    /** unit: with the systemd unit's environment and node flags (as deployed); plain: `node bin/refuge.js agent`. */
    launch: { type: 'string', default: 'unit' },
    /** RSS sampling interval (ms); with a short one, each agent's highest sample is printed with its time. */
    'sample-ms': { type: 'string', default: '250' },
  },
});
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const PIECE = 16 * MiB;
const diskBytes = Number(values['disk-gib']) * GiB;
const diskCount = Number(values.disks);
const dataBytes = Number(values['data-mib']) * MiB;
const dir = values.dir;
const pairs = (kvs: string[]) => Object.fromEntries(kvs.filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

const launch = values.launch === 'plain' ? { env: {}, nodeFlags: [] } : await unitLaunch();
const agentEnv = { ...launch.env, ...pairs(values['agent-env'].split(',')) };
const launchText = `${values.launch === 'plain' ? 'plain' : 'as the systemd unit'}: node ${launch.nodeFlags.join(' ') || '(no flags)'}, env ${Object.entries(agentEnv).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}`;
const say = (s: string) => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mib = (bytes: number) => (bytes / MiB).toFixed(0);

/** A sparse image of `diskBytes` with `dataBytes` of random data in PIECE-sized pieces spread evenly over it. */
async function sparseImage(path: string): Promise<void> {
  const f = await open(path, 'w');
  try {
    await f.truncate(diskBytes);
    const pieces = Math.max(1, Math.round(dataBytes / PIECE));
    const stride = Math.floor(diskBytes / pieces / PIECE) * PIECE;
    for (let p = 0; p < pieces; p++) await f.write(randomBytes(PIECE), 0, PIECE, p * stride);
  } finally {
    await f.close();
  }
}

/** VmRSS and VmHWM of a process, bytes (0 once it is gone). */
async function memoryOf(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

interface AgentRun {
  mode: 'cdp' | 'scan';
  machine: string;
  child: ChildProcess;
  /** Peak sampled VmRSS per phase, and when the latest phase peak was sampled. */
  peaks: Record<string, number>;
  peakAt?: string;
}

/** The kernel's peak of each agent so far, printed at the end of each phase: it tells which phase set VmHWM. */
async function sayPeaks(agents: AgentRun[], ended: string): Promise<void> {
  const peaks = await Promise.all(agents.map(async (a) => `${a.mode} ${mib((await memoryOf(a.child.pid as number)).hwm)} MiB (highest sample ${mib(a.peaks[phase] ?? 0)} MiB at ${a.peakAt ?? '-'})`));
  say(`  VmHWM at the end of the ${ended}: ${peaks.join(', ')}`);
}

await rm(dir, { recursive: true, force: true });
await mkdir(dir, { recursive: true });
say('building (the vault and agents run from dist/)');
execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
say(`images: 2 agents x ${diskCount} sparse disks of ${values['disk-gib']} GiB, ${values['data-mib']} MiB of data each`);
const images: Record<'cdp' | 'scan', string[]> = { cdp: [], scan: [] };
for (const mode of ['cdp', 'scan'] as const) {
  for (let i = 0; i < diskCount; i++) {
    const path = join(dir, `${mode}${i}.raw`);
    await sparseImage(path);
    images[mode].push(path);
  }
}

const vaultInit = await initTestVault(undefined, join(dir, 'vault'));
const vault: VaultProcess = await startVaultProcess(vaultInit);
const agents: AgentRun[] = [];
let fio: ChildProcess | undefined;
let phase = 'seed';
let sampling = true;
try {
  await vault.api('POST', '/vaults', { name: 'demo' });
  await vault.api('POST', '/vaults/demo/sites', { name: 'primary' });
  // Room at the recovery site for failing over 2 TiB of disks (the replication's readiness check asks for it).
  await vault.api('POST', '/vaults/demo/sites', { name: 'recovery', capacity: { vcpus: 16, memoryMiB: 32768, diskGiB: 2 * diskCount * Number(values['disk-gib']) + 1024 } });
  await vault.api('POST', '/vaults/demo/policies', { name: 'cdp', crashIntervalSeconds: 5 });
  await vault.api('POST', '/vaults/demo/policies', { name: 'scan', crashIntervalSeconds: 20 });
  const bin = join(root, 'bin', 'refuge.js');
  for (const mode of ['cdp', 'scan'] as const) {
    const machine = `vm-${mode}`;
    const registration = await writeRegistration((method, path, body) => vault.api(method, path, body), vault.url, join(dir, `${mode}-registration.json`));
    const logFile = openSync(join(dir, `${mode}-agent.log`), 'a');
    const disks = images[mode].flatMap((p, i) => ['--disk', `disk${i}=${p}`]);
    const child = spawn(process.execPath, [...launch.nodeFlags, bin, '--credentials', registration, '--vault', 'demo', 'agent', '--site', 'primary', '--name', machine, ...disks, '--capture', mode, '--state-dir', join(dir, `${mode}-agent`), '--heartbeat', '1s'], {
      stdio: ['ignore', logFile, logFile],
      env: { ...process.env, REFUGE_LOG_LEVEL: 'info', ...agentEnv },
    });
    agents.push({ mode, machine, child, peaks: {} });
  }
  const sampler = (async () => {
    while (sampling) {
      for (const a of agents) {
        const { rss } = await memoryOf(a.child.pid as number);
        if (rss > (a.peaks[phase] ?? 0)) a.peakAt = new Date().toISOString();
        a.peaks[phase] = Math.max(a.peaks[phase] ?? 0, rss);
      }
      await sleep(Number(values['sample-ms']));
    }
  })();
  type Machines = { items: { name: string }[] };
  for (let i = 0; (await vault.api<Machines>('GET', '/vaults/demo/machines')).items.length < agents.length; i++) {
    if (i > 600) throw new Error('the agents did not register');
    await sleep(100);
  }
  const started = Date.now();
  for (const a of agents) await vault.api('POST', '/vaults/demo/replications', { machine: a.machine, policy: a.mode, targetSite: 'recovery' });
  type Replication = { state: string; latestPoint?: { id: string } | null };
  /** When the newest point of the agent's replication was captured (ms; 0 without points). */
  const newestPoint = async (a: AgentRun) => {
    // Right after SIGCONT the vault may drop a kept-alive connection: that answer is retried at the next poll.
    const r = await vault.api<{ items: { capturedAt: string }[] }>('GET', `/vaults/demo/replications/${a.machine}/points?limit=1000`).catch(() => ({ items: [] }));
    return Math.max(0, ...r.items.map((p) => Date.parse(p.capturedAt)));
  };
  const protectedAll = async () => (await Promise.all(agents.map(async (a) => (await vault.api<Replication>('GET', `/vaults/demo/replications/${a.machine}`)).state === 'protected'))).every(Boolean);
  while (!(await protectedAll())) {
    if (agents.some((a) => a.child.exitCode !== null)) throw new Error('an agent exited during the seed');
    await sleep(500);
  }
  const seedSeconds = (Date.now() - started) / 1000;
  say(`  seeded both agents in ${seedSeconds.toFixed(0)} s (${mib(2 * diskCount * dataBytes)} MiB of data in ${2 * diskCount * Number(values['disk-gib'])} GiB of disks)`);

  await sayPeaks(agents, 'seed');
  phase = 'steady';
  const socket = join(dir, 'cdp-agent', 'nbd', 'disk0.sock');
  const fioSeconds = Number(values['steady-seconds']) + Number(values['cut-seconds']) + 60;
  fio = spawn('fio', ['--name=p11', '--ioengine=nbd', `--uri=nbd+unix:///disk0?socket=${socket}`, '--rw=randwrite', '--bs=8k', '--iodepth=4', '--rate=1m', '--size=1g', '--time_based=1', `--runtime=${fioSeconds}`], { stdio: 'ignore' });
  say(`  steady: fio 8 KiB random writes at 1 MB/s (in its first GiB) through the cdp agent's NBD export for ${values['steady-seconds']} s`);
  await sleep(Number(values['steady-seconds']) * 1000);

  await sayPeaks(agents, 'steady phase');
  phase = 'cut';
  say(`  link cut: the vault stopped (SIGSTOP) for ${values['cut-seconds']} s, fio still writing; then until both agents commit again`);
  process.kill(vault.pid, 'SIGSTOP');
  await sleep(Number(values['cut-seconds']) * 1000);
  process.kill(vault.pid, 'SIGCONT');
  const cutEnded = Date.now();
  for (let i = 0; ; i++) {
    const newest = await Promise.all(agents.map(newestPoint));
    if (newest.every((t) => t > cutEnded)) break;
    if (i > 600) throw new Error('the agents did not commit points after the cut');
    await sleep(500);
  }
  say(`  both agents committed a point cut after the link came back, ${((Date.now() - cutEnded) / 1000).toFixed(0)} s after it`);
  const hwm = await Promise.all(agents.map(async (a) => (await memoryOf(a.child.pid as number)).hwm));
  sampling = false;
  await sampler;

  const load = loadavg().map((l) => l.toFixed(2)).join(', ');
  say('');
  say(`P11 agent memory: ${diskCount} x ${values['disk-gib']} GiB sparse disks per agent, ${values['data-mib']} MiB data each; agents run ${launchText}; ${cpus().length} cores, Linux ${release()}, load average ${load}`);
  say('| agent | seed peak RSS (MiB) | steady peak RSS (MiB) | link-cut peak RSS (MiB) | VmHWM (MiB) | target |');
  say('|---|---|---|---|---|---|');
  agents.forEach((a, k) => {
    const peak = hwm[k] ?? 0;
    say(`| ${a.mode} | ${mib(a.peaks.seed ?? 0)} | ${mib(a.peaks.steady ?? 0)} | ${mib(a.peaks.cut ?? 0)} | **${mib(peak)}** | <= 150 MiB: ${peak <= 150 * MiB ? 'met' : 'NOT met'} |`);
  });
  say(`seed of both agents: ${seedSeconds.toFixed(0)} s`);
} finally {
  sampling = false;
  try {
    process.kill(vault.pid, 'SIGCONT');
  } catch {
    // already gone
  }
  if (fio) await stop(fio);
  for (const a of agents) await stop(a.child);
  await vault.stop();
  // The images are sparse but large: removed, with the agents' logs kept for a look when a run fails.
  for (const mode of ['cdp', 'scan'] as const) for (const p of images[mode]) await rm(p, { force: true });
  await rm(join(dir, 'vault'), { recursive: true, force: true });
}
