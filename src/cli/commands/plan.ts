import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import { PLAN_OPERATIONS, type PlanOperation } from '../../orchestration/plans/plan-operations.js';
import type { JobView } from '../../vault/jobs/definitions.js';
import type { ApiClient } from '../client.js';
import { globals } from '../context.js';
import { printFields, printJson, printTable, say } from '../output.js';

interface DryRun {
  operation: string;
  wouldRun: boolean;
  order: { index: number; name: string; pre: { name: string; kind: string }[]; machines: { replication: string; action: string; allowed: boolean; recovered: { recovered: string; recoverySite: string; addresses: { ipv4: string | null; network: string | null }[] } | null }[]; post: { name: string; kind: string }[] }[];
  capacity: { site: string; needed: Record<string, number>; free: Record<string, number>; status: string } | null;
  blocking: { what: string; message: string }[];
}

/** Follows a plan job until it ends or waits for an approval (then says how to give it). */
async function followPlan(client: ApiClient, id: string, json: boolean): Promise<JobView> {
  let shown = '';
  for (;;) {
    const job = await client.get<JobView>(await client.in(`/jobs/${id}`));
    const task = job.tasks.find((t) => t.state === 'running' || t.state === 'waiting' || t.state === 'failed');
    const line = `  ${job.state.padEnd(9)} ${task ? `${task.name}${task.message ? ` (${task.message})` : ''}` : ''}`;
    if (!json && line !== shown) say((shown = line));
    if (job.state === 'waiting') {
      if (!json) say(`job ${id} waits for approval: refuge plan approve ${id} [--comment TEXT], or refuge plan reject ${id} --comment TEXT`);
      return job;
    }
    if (job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled') return job;
    await sleep(500);
  }
}

/** `refuge plan ...`: recovery plans (create from a JSON file, run an operation, dry-run, approve, reject). */
export function registerPlanCommands(program: Command): void {
  const plan = program.command('plan').description('recovery plans: ordered groups of replications with pre/post actions');
  plan.command('create <name>')
    .description('create a recovery plan from a JSON file: {"groups": [{"name", "replications": [...], "pre": [...], "post": [...]}]}')
    .requiredOption('--file <path>', 'the groups, as JSON (actions: {"name", "kind": "script"|"webhook"|"manual", "target", "site"?, "timeoutSeconds"?})')
    .option('--description <text>', 'what the plan recovers')
    .action(async (name: string, o: { file: string; description?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      let spec: { groups?: unknown; description?: string };
      try {
        spec = JSON.parse(await readFile(o.file, 'utf8')) as typeof spec;
      } catch (err) {
        throw RefugeError.wrap(err, `cannot read the plan file ${o.file}`, 'invalid_argument');
      }
      const r = await client.request<Record<string, unknown>>('POST', await client.in('/recovery-plans'), { name, groups: spec.groups, ...(o.description ?? spec.description ? { description: o.description ?? spec.description } : {}) });
      if (json) printJson(r);
      else say(`recovery plan ${name} created`);
    });
  plan.command('list').description('list recovery plans').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const r = await client.get<{ items: { name: string; groups: { replications: string[] }[] }[] }>(await client.in('/recovery-plans'));
    if (json) return printJson(r);
    printTable(r.items.map((p) => ({ ...p, groups: p.groups.length, machines: p.groups.reduce((n, g) => n + g.replications.length, 0) })), ['name', 'groups', 'machines']);
  });
  plan.command('show <name>').description('show a plan, its last drill and its recent jobs').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const [p, jobs, drill] = await Promise.all([
      client.get<Record<string, unknown>>(await client.in(`/recovery-plans/${name}`)),
      client.get<{ items: (JobView & { waitingFor: string | null })[] }>(await client.in(`/recovery-plans/${name}/jobs?limit=5`)),
      client.get<{ lastSuccessfulRun: { startedAt: string; rtoSeconds: number } | null }>(await client.in(`/recovery-plans/${name}/drill-status`)),
    ]);
    if (json) return printJson({ ...p, jobs: jobs.items, drills: drill });
    printFields({ ...p, lastSuccessfulDrill: drill.lastSuccessfulRun ? `${drill.lastSuccessfulRun.startedAt} (RTO ${drill.lastSuccessfulRun.rtoSeconds} s)` : 'never' });
    printTable(jobs.items.map((j) => ({ ...j })), ['id', 'type', 'state', 'waitingFor', 'createdAt']);
  });
  plan.command('delete <name>').description('delete a recovery plan').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', await client.in(`/recovery-plans/${name}`));
    if (json) printJson({ deleted: name });
    else say(`recovery plan ${name} deleted`);
  });
  plan.command('dry-run <name> <operation>')
    .description(`show what an operation would do, changing nothing (operations: ${PLAN_OPERATIONS.join(', ')})`)
    .action(async (name: string, operation: string, _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      const r = await client.request<DryRun>('POST', await client.in(`/recovery-plans/${name}/dry-run`), { operation });
      if (json) return printJson(r);
      for (const g of r.order) {
        say(`group ${g.index} ${g.name}`);
        for (const a of g.pre) say(`  pre   ${a.kind.padEnd(8)} ${a.name}`);
        for (const m of g.machines) say(`  ${m.allowed ? 'run ' : 'NO  '}  ${m.action.padEnd(8)} ${m.replication} -> ${m.recovered ? `${m.recovered.recovered}@${m.recovered.recoverySite} ${m.recovered.addresses.map((a) => `${a.network ?? '?'}:${a.ipv4 ?? 'dhcp'}`).join(' ')}` : '?'}`);
        for (const a of g.post) say(`  post  ${a.kind.padEnd(8)} ${a.name}`);
      }
      if (r.capacity) say(`capacity at ${r.capacity.site}: needs ${JSON.stringify(r.capacity.needed)}, free ${JSON.stringify(r.capacity.free)} (${r.capacity.status})`);
      for (const b of r.blocking) say(`BLOCKED ${b.what}: ${b.message}`);
      say(r.wouldRun ? `${r.operation} would run` : `${r.operation} would be refused`);
      if (!r.wouldRun) process.exitCode = 3;
    });
  plan.command('run <name> <operation>')
    .description(`run an operation on the plan as one job (operations: ${PLAN_OPERATIONS.join(', ')})`)
    .option('--point <choice>', 'point choice for test failover and failover (latest, ...)')
    .option('--override <reason>', 'an owner\'s reason to go ahead although a readiness check failed')
    .option('--no-wait', 'print the job and return at once')
    .action(async (name: string, operation: string, o: { point?: string; override?: string; wait: boolean }, cmd: Command) => {
      const { client, json } = globals(cmd);
      if (!(PLAN_OPERATIONS as readonly string[]).includes(operation)) throw new RefugeError('invalid_argument', `unknown plan operation '${operation}'`, { hint: `one of: ${PLAN_OPERATIONS.join(', ')}` });
      const body = { ...(o.point ? { point: o.point } : {}), ...(o.override ? { override: { reason: o.override } } : {}) };
      const job = await client.request<JobView>('POST', await client.in(`/recovery-plans/${name}/${operation as PlanOperation}`), body);
      if (!o.wait) return json ? printJson(job) : say(`job ${job.id} started (${job.type})`);
      if (!json) say(`${operation} of plan ${name}: job ${job.id}`);
      const done = await followPlan(client, job.id, json === true);
      if (json) printJson(done);
      if (done.state === 'failed' || done.state === 'cancelled') throw new RefugeError('failed_precondition', `${operation} of plan ${name} ${done.state}: ${done.error?.message ?? ''}`, done.error?.hint ? { hint: done.error.hint } : {});
    });
  for (const [verb, approved] of [['approve', true], ['reject', false]] as const) {
    plan.command(`${verb} <job>`)
      .description(`${verb} the manual action a plan job waits for${approved ? ' (the plan goes on)' : ' (the plan fails)'}`)
      .option('--comment <text>', 'recorded with the answer')
      .option('--no-wait', 'return at once')
      .action(async (id: string, o: { comment?: string; wait: boolean }, cmd: Command) => {
        const { client, json } = globals(cmd);
        const job = await client.request<JobView>('POST', await client.in(`/jobs/${id}/resume`), { approved, ...(o.comment ? { comment: o.comment } : {}) });
        if (!o.wait) return json ? printJson(job) : say(`job ${id} ${verb}d`);
        const done = await followPlan(client, id, json === true);
        if (json) printJson(done);
        else say(`job ${id} ${done.state}${done.error ? `: ${done.error.message}` : ''}`);
      });
  }
}
