import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import { ENDED_JOB_STATES, type JobDefinition, type JobView, type TaskContext } from '../../vault/jobs/definitions.js';
import type { PlanJobDeps } from '../plans/plan-job.js';
import type { PlanService } from '../plans/plan-service.js';
import { machineMap } from '../plans/context.js';
import type { DrillRepository, DrillSubjectKind } from './drill-repository.js';
import { runProbe, type Probe, type ProbeResult } from './probe.js';

export interface DrillJobParams {
  drillId: string;
  runId: string;
  vault: string;
  subjectKind: DrillSubjectKind;
  subject: string;
  probe: Probe;
  requestedAt: string;
}

export interface DrillJobDeps extends PlanJobDeps {
  plans(): PlanService;
  drills: DrillRepository;
}

export const DRILL_JOB_TYPE = 'drill';

type Ctx = TaskContext<DrillJobParams>;

async function waitForJob(deps: DrillJobDeps, id: string, signal: AbortSignal): Promise<JobView> {
  for (;;) {
    const job = await deps.engine().get(id);
    if (ENDED_JOB_STATES.includes(job.state)) return job;
    await sleep(250, signal);
  }
}

/** Starts the subject's test failover (or finds the one this drill started before a restart); returns its job id. */
async function startTestFailover(deps: DrillJobDeps, p: DrillJobParams): Promise<string> {
  if (p.subjectKind === 'replication') {
    const vault = await deps.repos.vaults.get(p.vault);
    const rep = await deps.repos.replications.get(vault.id, p.subject);
    // This drill's own test failover, asked for before a restart of the vault, is not asked for twice.
    const [mine] = await deps.engine().list(vault.id, { replicationId: rep.id, type: 'test-failover', limit: 1 });
    if (mine && mine.createdAt >= p.requestedAt) return mine.id;
    return (await deps.operations().request(p.vault, p.subject, 'test-failover', { principal: null })).id;
  }
  const vault = await deps.repos.vaults.get(p.vault);
  const plan = await deps.repos.plans.get(vault.id, p.subject);
  const mine = (await deps.plans().jobs(vault, plan, 5)).find((j) => j.type === 'plan-test-failover' && j.createdAt >= p.requestedAt);
  if (mine) return mine.id;
  return (await deps.plans().request(p.vault, p.subject, 'test-failover', { principal: null, unattended: true })).id;
}

/**
 * Removes the test copies this drill started; returns the cleanup job, or null when there was nothing to clean.
 * A test failover the drill did not start (someone's own, running when the drill came due) is never touched.
 */
async function cleanUp(deps: DrillJobDeps, ctx: Ctx, signal: AbortSignal): Promise<JobView | null> {
  const p = ctx.job.params;
  if (typeof ctx.result.testJobId !== 'string') return null;
  const vault = await deps.repos.vaults.get(p.vault);
  if (p.subjectKind === 'replication') {
    let rep = await deps.repos.replications.get(vault.id, p.subject);
    if (rep.activeJobId) {
      await waitForJob(deps, rep.activeJobId, signal);
      rep = await deps.repos.replications.get(vault.id, p.subject);
    }
    if (rep.testFailoverState !== 'running') return null;
    return waitForJob(deps, (await deps.operations().request(p.vault, p.subject, 'test-failover-cleanup', { principal: null })).id, signal);
  }
  const plan = await deps.repos.plans.get(vault.id, p.subject);
  const names = plan.groups.flatMap((g) => g.replications);
  const reps = await deps.repos.replications.list(vault.id, { names });
  if (!reps.some((r) => r.testFailoverState !== 'none')) return null;
  return waitForJob(deps, (await deps.plans().request(p.vault, p.subject, 'test-failover-cleanup', { principal: null })).id, signal);
}

/**
 * A drill run as one job: test failover of the replication or plan, the health probe against the test copy
 * (retried while it boots), cleanup, and the outcome with the measured RTO (test failover request -> probe
 * success). A failed test failover or probe does not stop the cleanup: only the last task fails the job.
 */
export function drillJobDefinition(deps: DrillJobDeps): JobDefinition<DrillJobParams> {
  const finish = async (ctx: Ctx, error: string | null) => {
    const r = ctx.result;
    const probe = r.probe as ProbeResult | undefined;
    const ok = error === null && r.failoverOk === true && probe?.ok === true && r.cleanedUp === true;
    const rto = probe?.ok && typeof r.failoverRequestedAt === 'string' ? (Date.parse(probe.at) - Date.parse(r.failoverRequestedAt)) / 1000 : null;
    await deps.drills.finishRun(ctx.job.params.runId, {
      outcome: ok ? 'succeeded' : 'failed',
      rtoSeconds: rto,
      cleanedUp: r.cleanedUp === true,
      details: { testJob: r.testJobId ?? null, cleanupJob: r.cleanupJobId ?? null, probe: probe ?? null, failoverError: r.failoverError ?? null },
      error: ok ? null : (error ?? (typeof r.failoverError === 'string' ? r.failoverError : probe && !probe.ok ? `probe failed: ${probe.lastError}` : 'cleanup did not finish')),
    });
    return { ok, rto };
  };
  return {
    type: DRILL_JOB_TYPE,
    tasks: [
      {
        name: 'test-failover',
        async run(ctx) {
          const p = ctx.job.params;
          ctx.result.failoverRequestedAt ??= new Date().toISOString();
          try {
            const id = await startTestFailover(deps, p);
            ctx.result.testJobId = id;
            const job = await waitForJob(deps, id, ctx.signal);
            ctx.result.failoverOk = job.state === 'succeeded';
            if (job.state !== 'succeeded') ctx.result.failoverError = `test failover ${job.state}: ${job.error?.message ?? ''}`;
          } catch (err) {
            if (ctx.signal.aborted) throw err;
            ctx.result.failoverOk = false;
            ctx.result.failoverError = `test failover could not start: ${(err as Error).message}`;
          }
        },
      },
      {
        name: 'probe',
        async run(ctx) {
          const p = ctx.job.params;
          if (ctx.result.failoverOk !== true) return;
          const vault = await deps.repos.vaults.get(p.vault);
          const groups = p.subjectKind === 'plan' ? (await deps.repos.plans.get(vault.id, p.subject)).groups : [{ name: 'drill', replications: [p.subject], pre: [], post: [] }];
          const map = await machineMap(deps.repos, vault.id, groups, 'test-failover');
          const first = map[0];
          const target = {
            machine: first?.recovered ?? p.subject,
            address: first?.addresses.find((a) => a.ipv4)?.ipv4 ?? first?.recovered ?? p.subject,
            env: {
              REFUGE_VAULT: p.vault,
              REFUGE_DRILL_SUBJECT: `${p.subjectKind}:${p.subject}`,
              REFUGE_MACHINE_MAP: map.map((m) => `${m.source}=${m.recovered}@${m.recoverySite}/${m.addresses.find((a) => a.ipv4)?.ipv4 ?? ''}`).join(' '),
            },
          };
          ctx.progress(0, `probing ${p.probe.kind} against ${target.machine}`);
          ctx.result.probe = await runProbe(p.probe, target, ctx.signal);
        },
      },
      {
        name: 'cleanup',
        async run(ctx) {
          const job = await cleanUp(deps, ctx, ctx.signal);
          ctx.result.cleanupJobId = job?.id ?? null;
          if (job && job.state !== 'succeeded') throw new RefugeError('failed_precondition', `drill cleanup ${job.state}: ${job.error?.message ?? ''}`, { hint: 'clean the test failover up by hand and look at the cleanup job' });
          ctx.result.cleanedUp = true;
        },
      },
      {
        name: 'record-outcome',
        async run(ctx) {
          const { ok, rto } = await finish(ctx, null);
          ctx.result.rtoSeconds = rto;
          ctx.result.outcome = ok ? 'succeeded' : 'failed';
          if (!ok) {
            const probe = ctx.result.probe as ProbeResult | undefined;
            throw new RefugeError('failed_precondition', `drill of ${ctx.job.params.subjectKind} '${ctx.job.params.subject}' failed: ${typeof ctx.result.failoverError === 'string' ? ctx.result.failoverError : probe ? `the ${ctx.job.params.probe.kind} probe did not succeed after ${probe.attempts} attempt(s): ${probe.lastError}` : 'no probe ran'}; the test copy was cleaned up`);
          }
        },
      },
    ],
    async onFailed(ctx, error) {
      // A drill never leaves a test copy behind: clean up on any failure, then record it.
      if (ctx.result.cleanedUp !== true) {
        try {
          const job = await cleanUp(deps, ctx, AbortSignal.timeout(600_000));
          ctx.result.cleanedUp = job === null || job.state === 'succeeded';
        } catch (err) {
          ctx.log.error({ err }, 'drill cleanup after failure failed');
        }
      }
      await finish(ctx, error.message);
    },
  };
}
