import { RefugeError } from '../../core/errors.js';
import type { JobView } from '../../vault/jobs/definitions.js';
import type { JobEngine } from '../../vault/jobs/engine.js';
import type { RecoveryPlan, Vault } from '../../vault/model.js';
import type { ReadinessService } from '../../vault/readiness/service.js';
import type { ReadinessTrigger } from '../../vault/readiness/types.js';
import { allowedOperations } from '../../vault/replication-state.js';
import type { Principal } from '../../vault/security/roles.js';
import type { OrchestrationDeps } from '../deps.js';
import { machineMap } from './context.js';
import { planJobType, type PlanJobParams } from './plan-job.js';
import { PLAN_OPERATIONS, PLAN_OPERATION_SPECS, checkPointChoice, isAvailable, planOperationSpec, type PlanOperation } from './plan-operations.js';

export interface PlanRequest {
  point?: string;
  principal?: Principal | null;
  override?: { reason: string };
  unattended?: boolean;
}

const readinessTrigger = (op: PlanOperation): ReadinessTrigger | undefined =>
  op === 'test-failover' ? 'test-failover' : PLAN_OPERATION_SPECS[op].runsActions ? 'failover' : undefined;

/**
 * Runs recovery plans: checks a plan operation up front (every machine must allow it, readiness must pass,
 * no other run of the plan may be active), then records it as one job (see plan-job.ts). `dryRun` shows what a
 * run would do and what blocks it, changing nothing (it only records the readiness report it ran).
 */
export class PlanService {
  constructor(
    private readonly deps: OrchestrationDeps,
    private readonly engine: JobEngine,
    private readonly readiness?: ReadinessService,
  ) {}

  async request(vaultName: string, planName: string, operation: PlanOperation, req: PlanRequest = {}): Promise<JobView> {
    const spec = planOperationSpec(operation);
    const point = checkPointChoice(operation, req.point);
    const vault = await this.deps.repos.vaults.get(vaultName);
    const plan = await this.deps.repos.plans.get(vault.id, planName);
    await this.assertIdle(vault, plan);
    checkActions(plan, spec.runsActions);
    const reps = await this.replications(vault, plan);
    const refused = reps.filter((r) => !spec.notApplicable?.(r) && !allowedOperations(r).includes(spec.machineOperation));
    if (refused.length > 0) {
      throw new RefugeError('operation_not_allowed', `${operation} of plan '${plan.name}' is not allowed now: ${refused.map((r) => `'${r.name}' is ${r.state}${r.testFailoverState !== 'none' ? ` with a test failover ${r.testFailoverState}` : ''}${r.activeJobId ? ` (job ${r.activeJobId} holds it)` : ''}`).join('; ')}`, {
        details: { machines: refused.map((r) => ({ replication: r.name, allowedOperations: allowedOperations(r) })) },
      });
    }
    const trigger = readinessTrigger(operation);
    if (this.readiness && trigger) {
      const report = await this.readiness.forPlan(vault, plan, { trigger, principal: req.principal ?? null, permission: 'operate' });
      await this.readiness.gate(report, req.principal ?? null, req.override);
    }
    const params: PlanJobParams = {
      operation,
      vault: vault.name,
      plan: { id: plan.id, name: plan.name },
      groups: plan.groups,
      ...(point ? { point } : {}),
      principal: req.principal ?? null,
      ...(req.override ? { override: req.override } : {}),
      ...(req.unattended ? { unattended: true } : {}),
      requestedAt: new Date().toISOString(),
    };
    const id = await this.engine.create(this.deps.repos.db, { vaultId: vault.id, type: planJobType(operation), replicationId: null, params, ...(req.principal ? { requestedBy: req.principal.name } : {}) });
    this.engine.kick();
    return this.engine.get(id);
  }

  /**
   * The plan operations a request would be let through now (readiness aside, which is judged when one is asked):
   * none while a run of the plan is active; else each this vault offers whose per-machine operation every machine
   * of the plan allows, or does not need (at least one must).
   */
  async allowedOperations(vault: Vault, plan: RecoveryPlan): Promise<PlanOperation[]> {
    if (await this.activeJob(vault, plan)) return [];
    const names = plan.groups.flatMap((g) => g.replications);
    const reps = await this.deps.repos.replications.list(vault.id, { names });
    if (reps.length === 0 || reps.length !== names.length) return [];
    return PLAN_OPERATIONS.filter((op) => {
      const spec = PLAN_OPERATION_SPECS[op];
      const needed = reps.filter((r) => !spec.notApplicable?.(r));
      return isAvailable(op) && needed.length > 0 && needed.every((r) => (allowedOperations(r) as string[]).includes(spec.machineOperation));
    });
  }

  /** The plan's jobs, newest first. */
  async jobs(vault: Vault, plan: RecoveryPlan, limit = 20): Promise<JobView[]> {
    const rows = await this.deps.repos.db
      .selectFrom('jobs')
      .select(['id', 'paramsJson'])
      .where('vaultId', '=', vault.id)
      .where('type', 'in', PLAN_OPERATIONS.map(planJobType))
      .orderBy('id', 'desc')
      .limit(500)
      .execute();
    const ids = rows.filter((r) => (JSON.parse(r.paramsJson) as PlanJobParams).plan.id === plan.id).slice(0, limit).map((r) => r.id);
    return Promise.all(ids.map((id) => this.engine.get(id)));
  }

  /** What `operation` would do: order, capacity needed against free, addresses, and what blocks it. */
  async dryRun(vaultName: string, planName: string, operation: PlanOperation, principal: Principal | null) {
    const spec = PLAN_OPERATION_SPECS[operation];
    const vault = await this.deps.repos.vaults.get(vaultName);
    const plan = await this.deps.repos.plans.get(vault.id, planName);
    const reps = new Map((await this.replications(vault, plan)).map((r) => [r.name, r]));
    const map = new Map((await machineMap(this.deps.repos, vault.id, plan.groups, operation)).map((m) => [m.replication, m]));
    const blocking: { what: string; message: string }[] = [];
    if (!isAvailable(operation)) blocking.push({ what: 'operation', message: `this vault has no per-machine '${spec.machineOperation}' operation yet` });
    const active = await this.activeJob(vault, plan);
    if (active) blocking.push({ what: 'plan', message: `job ${active.id} (${active.type}) is running this plan` });
    try {
      checkActions(plan, spec.runsActions);
    } catch (err) {
      blocking.push({ what: 'actions', message: (err as Error).message });
    }
    const order = plan.groups.map((g, i) => ({
      index: i + 1,
      name: g.name,
      pre: spec.runsActions ? g.pre.map((a) => ({ name: a.name, kind: a.kind, site: a.site ?? 'recovery' })) : [],
      machines: g.replications.map((name) => {
        const rep = reps.get(name) as NonNullable<ReturnType<typeof reps.get>>;
        const allowed = allowedOperations(rep);
        const skipped = spec.notApplicable?.(rep) === true;
        const ok = skipped || allowed.includes(spec.machineOperation as never);
        if (!ok) blocking.push({ what: `replication '${name}'`, message: `${spec.machineOperation} is not allowed: it is ${rep.state}${rep.testFailoverState !== 'none' ? ` with a test failover ${rep.testFailoverState}` : ''}; allowed now: ${allowed.join(', ') || 'none'}` });
        return { replication: name, state: rep.state, testFailoverState: rep.testFailoverState, action: skipped ? 'skip' : spec.machineOperation, allowed: ok, recovered: map.get(name) ?? null };
      }),
      post: spec.runsActions ? g.post.map((a) => ({ name: a.name, kind: a.kind, site: a.site ?? 'recovery' })) : [],
    }));
    const trigger = readinessTrigger(operation) ?? 'on-demand';
    let readiness: { report: string; worst: string; results: unknown[] } | null = null;
    let capacity: Record<string, unknown> | null = null;
    if (this.readiness) {
      const report = await this.readiness.forPlan(vault, plan, { trigger, principal, permission: 'operate' });
      readiness = { report: report.id, worst: report.worst, results: report.results };
      for (const r of report.results.filter((x) => x.status === 'fail')) blocking.push({ what: `readiness: ${r.check}`, message: r.message });
      const cap = report.results.find((r) => r.check === 'target-capacity');
      if (cap) {
        const m = cap.measured as { site?: string; capacity?: unknown; free?: unknown; needsNow?: unknown; addresses?: unknown };
        capacity = { site: m.site, status: cap.status, message: cap.message, needed: m.needsNow, free: m.free, capacity: m.capacity, addresses: m.addresses };
      }
    }
    return { plan: plan.name, operation, failoverType: spec.failoverType, direction: spec.direction, order, capacity, readiness, blocking, wouldRun: blocking.length === 0 };
  }

  private async replications(vault: Vault, plan: RecoveryPlan) {
    const names = plan.groups.flatMap((g) => g.replications);
    const order = new Map(names.map((n, i) => [n, i]));
    const reps = (await this.deps.repos.replications.list(vault.id, { names })).sort((a, b) => (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0));
    const missing = names.filter((n) => !reps.some((r) => r.name === n));
    if (missing.length > 0) throw new RefugeError('failed_precondition', `recovery plan '${plan.name}' names replications that no longer exist: ${missing.join(', ')}`, { hint: 'edit the plan\'s groups' });
    if (reps.length === 0) throw new RefugeError('failed_precondition', `recovery plan '${plan.name}' has no machines`);
    return reps;
  }

  private async activeJob(vault: Vault, plan: RecoveryPlan): Promise<JobView | undefined> {
    return (await this.jobs(vault, plan, 50)).find((j) => j.state === 'queued' || j.state === 'running' || j.state === 'waiting');
  }

  private async assertIdle(vault: Vault, plan: RecoveryPlan): Promise<void> {
    const active = await this.activeJob(vault, plan);
    if (active) {
      throw new RefugeError('operation_not_allowed', `recovery plan '${plan.name}' is busy: job ${active.id} (${active.type}) is ${active.state}`, {
        hint: active.state === 'waiting' ? `approve or reject it: POST /api/v1/vaults/${vault.name}/jobs/${active.id}/resume` : 'wait for it to end or cancel it',
        details: { job: active.id },
      });
    }
  }
}

/** Webhook targets must be http(s) URLs; checked before anything runs rather than at the group that calls them. */
function checkActions(plan: RecoveryPlan, runsActions: boolean): void {
  if (!runsActions) return;
  for (const g of plan.groups) {
    for (const a of [...g.pre, ...g.post]) {
      if (a.kind !== 'webhook') continue;
      let ok = false;
      try {
        ok = ['http:', 'https:'].includes(new URL(a.target).protocol);
      } catch {
        ok = false;
      }
      if (!ok) throw new RefugeError('invalid_argument', `webhook action '${a.name}' of group '${g.name}' has no http(s) URL`, { hint: 'edit the plan' });
    }
  }
}
