/**
 * P7, plan part (docs/performance.md): orchestration overhead of a 20-machine recovery plan in 3 groups, from the
 * command to every machine's process running (target <= 20 s). The vault is assembled in this process on SQLite with
 * real filesystem stores and the real job engine; machines run through the `command` fabric provider with hooks
 * that start a `sleep` process (bench/plans/stand-in-hooks.sh), so a guest's boot time is not counted. The
 * reference measured in the same run: one machine's test failover through its own operation (the per-machine floor
 * the plan adds its orchestration to). Run: npx tsx bench/plans/plan-overhead.ts [--runs 3]; results in
 * bench/results/plans-*.json and docs/benchmarks.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CommandProvider } from '../../src/fabric/command/command-provider.js';
import type { JobView } from '../../src/vault/jobs/definitions.js';
import { seedPlanMachines } from '../../test/helpers/plans.js';
import { createTestVault } from '../../test/helpers/test-vault.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, machines: { type: 'string', default: '20' }, groups: { type: 'string', default: '3' } } });
const RUNS = Number(values.runs);
const N = Number(values.machines);
const GROUPS = Number(values.groups);
const hooks = join(import.meta.dirname, 'stand-in-hooks.sh');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const s = (ms: number) => Number((ms / 1000).toFixed(2));

async function once(run: number) {
  const v = await createTestVault('sqlite', { fabricFor: (site) => new CommandProvider({ workDir: site.config.workDir, hooks: { start: hooks, status: hooks, stop: hooks, delete: hooks, console: hooks } }) });
  try {
    const names = Array.from({ length: N }, (_, i) => `m${String(i).padStart(2, '0')}`);
    await seedPlanMachines(v, [...names, 'single'], { capacity: { vcpus: 1000, memoryMiB: 1_000_000, diskGiB: 10_000 } });
    const per = Math.ceil(N / GROUPS);
    const groups = Array.from({ length: GROUPS }, (_, g) => ({ name: `g${g + 1}`, replications: names.slice(g * per, (g + 1) * per) }));
    const created = await v.call('POST', '/api/v1/vaults/demo/recovery-plans', { name: 'bench', groups });
    if (created.status !== 201) throw new Error(JSON.stringify(created.body));

    // Reference: one machine through its own operation, command -> process running.
    const t0 = Date.now();
    const single = await v.call<JobView>('POST', '/api/v1/vaults/demo/replications/single/test-failover', { point: 'latest' });
    const singleDone = await v.engine.waitFor(single.body.id, 120_000);
    if (singleDone.state !== 'succeeded') throw new Error(JSON.stringify(singleDone.error));
    const singleRunning = Date.parse(String(singleDone.result.runningAt)) - t0;

    const p0 = Date.now();
    const plan = await v.call<JobView>('POST', '/api/v1/vaults/demo/recovery-plans/bench/test-failover', { point: 'latest' });
    if (plan.status !== 202) throw new Error(JSON.stringify(plan.body));
    const done = await v.engine.waitFor(plan.body.id, 600_000);
    const p1 = Date.now();
    if (done.state !== 'succeeded') throw new Error(JSON.stringify(done.error));
    const machines = done.result.machines as Record<string, { jobId: string }>;
    const sub = await Promise.all(Object.values(machines).map((m) => v.engine.get(m.jobId)));
    const lastRunning = Math.max(...sub.map((j) => Date.parse(String(j.result.runningAt)))) - p0;
    const groupSeconds = done.tasks.map((t) => s(Date.parse(t.endedAt as string) - Date.parse(t.startedAt as string)));

    const c0 = Date.now();
    const cleanup = await v.call<JobView>('POST', '/api/v1/vaults/demo/recovery-plans/bench/test-failover-cleanup', {});
    const cleaned = await v.engine.waitFor(cleanup.body.id, 600_000);
    if (cleaned.state !== 'succeeded') throw new Error(JSON.stringify(cleaned.error));
    const result = { run, machines: N, groups: GROUPS, singleMachineRunningSeconds: s(singleRunning), planAllRunningSeconds: s(lastRunning), planJobSeconds: s(p1 - p0), groupSeconds, cleanupSeconds: s(Date.now() - c0) };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return result;
  } finally {
    await v.cleanup();
  }
}

const results = [];
for (let r = 1; r <= RUNS; r++) results.push(await once(r));
const summary = {
  at: new Date().toISOString(),
  machines: N,
  groups: GROUPS,
  runs: results,
  median: {
    singleMachineRunningSeconds: median(results.map((r) => r.singleMachineRunningSeconds)),
    planAllRunningSeconds: median(results.map((r) => r.planAllRunningSeconds)),
    planJobSeconds: median(results.map((r) => r.planJobSeconds)),
    cleanupSeconds: median(results.map((r) => r.cleanupSeconds)),
  },
};
await mkdir(join(import.meta.dirname, '..', 'results'), { recursive: true });
const file = join(import.meta.dirname, '..', 'results', `plans-${summary.at.replace(/[:.]/g, '-')}.json`);
await writeFile(file, JSON.stringify(summary, null, 2));
process.stdout.write(`median: ${JSON.stringify(summary.median)}\nwritten: ${file}\n`);
