import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import type { JobDefinition, JobView, TaskContext, TaskDefinition } from '../../vault/jobs/definitions.js';
import { ENDED_JOB_STATES } from '../../vault/jobs/definitions.js';
import type { JobEngine } from '../../vault/jobs/engine.js';
import type { PlanAction, PlanGroup, Replication } from '../../vault/model.js';
import { allowedOperations } from '../../vault/replication-state.js';
import type { Principal } from '../../vault/security/roles.js';
import type { OrchestrationDeps } from '../deps.js';
import type { OperationService } from '../operations.js';
import { runAction } from './actions.js';
import { machineMap, type ActionContext } from './context.js';
import { PLAN_OPERATIONS, PLAN_OPERATION_SPECS, planOperationSpec, type PlanOperation } from './plan-operations.js';

/** What a plan job carries: a snapshot of the plan (edits do not change a running job) and who asked. */
export interface PlanJobParams {
  operation: PlanOperation;
  vault: string;
  plan: { id: string; name: string };
  groups: PlanGroup[];
  point?: string;
  principal: Principal | null;
  override?: { reason: string };
  /** Drills run plans unattended: manual actions are skipped (and recorded as skipped). */
  unattended?: boolean;
  requestedAt: string;
}

/** Where the plan's per-machine operations go: late-bound, since OperationService needs the engine these jobs run on. */
export interface PlanJobDeps extends OrchestrationDeps {
  operations(): OperationService;
  engine(): JobEngine;
}

export const planJobType = (op: PlanOperation) => `plan-${op}`;

/**
 * A plan operation as ONE durable job: for each group in order, its pre actions, then its machines (in parallel,
 * each through OperationService as its own per-machine job, which this job waits for), then its post actions.
 * Task names say the group and action, so the job's tasks are the plan's order with their timestamps.
 */
export function planTasks(deps: PlanJobDeps, p: PlanJobParams): TaskDefinition<PlanJobParams>[] {
  const spec = PLAN_OPERATION_SPECS[p.operation];
  const tasks: TaskDefinition<PlanJobParams>[] = [];
  for (const [i, group] of p.groups.entries()) {
    const index = i + 1;
    const action = (a: PlanAction, phase: 'pre' | 'post'): TaskDefinition<PlanJobParams> => ({
      name: `group-${index}-${phase}-${a.name}`,
      run: (ctx) => actionTask(deps, ctx, group, index, a, phase),
    });
    if (spec.runsActions) tasks.push(...group.pre.map((a) => action(a, 'pre')));
    tasks.push({ name: `group-${index}-machines`, run: (ctx) => machinesTask(deps, ctx, group, index) });
    if (spec.runsActions) tasks.push(...group.post.map((a) => action(a, 'post')));
  }
  return tasks;
}

async function actionTask(deps: PlanJobDeps, ctx: TaskContext<PlanJobParams>, group: PlanGroup, index: number, a: PlanAction, phase: 'pre' | 'post'): Promise<void> {
  const p = ctx.job.params;
  const spec = PLAN_OPERATION_SPECS[p.operation];
  const vault = await deps.repos.vaults.get(p.vault);
  const machines = await machineMap(deps.repos, vault.id, p.groups, p.operation);
  const site = a.kind === 'script' ? (a.site ?? 'recovery') : 'recovery';
  const any = machines[0];
  const c: ActionContext = {
    vault: p.vault,
    plan: p.plan.name,
    job: ctx.job.id,
    operation: p.operation,
    failoverType: spec.failoverType,
    direction: spec.direction,
    group: { index, name: group.name, replications: group.replications },
    action: { name: a.name, kind: a.kind, phase, site },
    site: (site === 'primary' ? any?.sourceSite : any?.recoverySite) ?? '',
    machines,
  };
  const key = `group-${index}-${phase}-${a.name}`;
  const actions = (ctx.result.actions ??= {}) as Record<string, unknown>;
  // An unplanned failover assumes the primary may be gone: actions on the primary site are skipped, not failed.
  if (a.kind === 'script' && site === 'primary' && spec.failoverType === 'unplanned') {
    actions[key] = { kind: a.kind, at: new Date().toISOString(), outcome: 'skipped', detail: { reason: 'unplanned failover: the primary site may be unreachable' } };
    return;
  }
  ctx.progress(0, `${phase} action ${a.name} (${a.kind})`);
  actions[key] = await runAction(a, c, ctx, { unattended: p.unattended === true });
}

interface MachineOutcome {
  replication: string;
  jobId: string | null;
  state: 'succeeded' | 'skipped' | 'failed';
  message?: string;
}

async function machinesTask(deps: PlanJobDeps, ctx: TaskContext<PlanJobParams>, group: PlanGroup, index: number): Promise<void> {
  const p = ctx.job.params;
  const spec = planOperationSpec(p.operation);
  const vault = await deps.repos.vaults.get(p.vault);
  const recorded = ((ctx.result.machines ??= {}) as Record<string, MachineOutcome>);
  let finished = 0;
  const one = async (name: string): Promise<MachineOutcome> => {
    const rep = await deps.repos.replications.get(vault.id, name);
    // A job asked for by an earlier run of this task is waited for again, unless it failed: a restarted plan asks anew.
    const previous = recorded[name]?.jobId ? await deps.engine().get(recorded[name].jobId) : undefined;
    let jobId: string | null = null;
    if (previous && (previous.state === 'succeeded' || !ENDED_JOB_STATES.includes(previous.state))) jobId = previous.id;
    else if (rep.activeJobId) jobId = await ownJob(deps, rep, spec.machineOperation);
    if (!jobId) {
      if (spec.notApplicable?.(rep) || spec.done(rep, p.requestedAt)) return { replication: name, jobId: null, state: 'skipped', message: `already ${rep.state}/${rep.testFailoverState}` };
      const job = await deps.operations().request(p.vault, name, spec.machineOperation, {
        ...(p.point ? { point: p.point } : {}),
        principal: p.principal,
        ...(p.override ? { override: p.override } : {}),
      });
      jobId = job.id;
    }
    recorded[name] = { replication: name, jobId, state: 'failed', message: 'not finished' };
    const job = await waitForJob(deps.engine(), jobId, ctx.signal);
    ctx.progress(++finished / group.replications.length, `${finished}/${group.replications.length} machines of group ${group.name} done`);
    return job.state === 'succeeded'
      ? { replication: name, jobId, state: 'succeeded' }
      : { replication: name, jobId, state: 'failed', message: job.error?.message ?? job.state };
  };
  const settled = await Promise.allSettled(group.replications.map(one));
  const outcomes = settled.map((s, i) => (s.status === 'fulfilled' ? s.value : { replication: group.replications[i] as string, jobId: recorded[group.replications[i] as string]?.jobId ?? null, state: 'failed' as const, message: (s.reason as Error).message }));
  for (const o of outcomes) recorded[o.replication] = o;
  ctx.result.machines = recorded;
  const failed = outcomes.filter((o) => o.state === 'failed');
  if (failed.length > 0) {
    throw new RefugeError('failed_precondition', `group ${index} '${group.name}' of plan '${p.plan.name}': ${p.operation} failed for ${failed.map((f) => `'${f.replication}' (${f.message ?? 'failed'})`).join(', ')}`, {
      hint: 'look at the machines\' jobs, fix the cause and restart this job: it continues from this group',
      details: { failed },
    });
  }
}

/** After a crash between asking for a machine's operation and saving its job id: the job holding the machine, if it is this operation's. */
async function ownJob(deps: PlanJobDeps, rep: Replication, operation: string): Promise<string | null> {
  if (!rep.activeJobId) return null;
  const job = await deps.engine().get(rep.activeJobId);
  if (job.type !== operation) {
    throw new RefugeError('conflict', `replication '${rep.name}' is held by job ${job.id} (${job.type}); the plan cannot run ${operation} on it now`, {
      details: { allowedOperations: allowedOperations(rep) },
    });
  }
  return job.id;
}

async function waitForJob(engine: JobEngine, jobId: string, signal: AbortSignal): Promise<JobView> {
  for (;;) {
    const job = await engine.get(jobId);
    if (ENDED_JOB_STATES.includes(job.state)) return job;
    await sleep(200, signal);
  }
}

/** The job definitions of every plan operation (one type each, so job lists say what ran). */
export function planJobDefinitions(deps: PlanJobDeps): JobDefinition<PlanJobParams>[] {
  return PLAN_OPERATIONS.map((op) => ({
    type: planJobType(op),
    tasks: [],
    tasksFor: (params: PlanJobParams) => planTasks(deps, params),
    // A failed or rejected plan can be restarted: it continues from its first unfinished group or action (a
    // rejected approval asks again). Machines already done are skipped, not asked twice.
    // Cancelling the plan cancels the machines' jobs it is waiting for (each returns its replication as it was).
    async onFailed(ctx, error) {
      if (error.code !== 'cancelled') return;
      const machines = (ctx.result.machines ?? {}) as Record<string, MachineOutcome>;
      for (const m of Object.values(machines)) {
        if (!m.jobId) continue;
        const job = await deps.engine().get(m.jobId);
        if (!ENDED_JOB_STATES.includes(job.state)) await deps.engine().cancel(job.id).catch((err: unknown) => ctx.log.warn({ err, job: job.id }, 'cancelling a machine job of a cancelled plan failed'));
      }
    },
    async onRestart(trx, job) {
      // A rejected approval is asked again, not rejected again from its old answer.
      await trx.updateTable('jobTasks').set({ inputJson: null }).where('jobId', '=', job.id).where('state', '!=', 'succeeded').execute();
    },
  }));
}
