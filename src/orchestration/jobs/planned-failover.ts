import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import type { TaskDefinition } from '../../vault/jobs/definitions.js';
import type { OrchestrationDeps } from '../deps.js';
import type { RecoverParams } from './recover-machine.js';

/**
 * The first half of a planned failover (and of a failback, which is a planned failover back home): stop the
 * machine at the source, then have its agent ship everything written up to the stop as a final point. The
 * recover tasks then boot that point at the target: nothing written at the source is lost.
 */
export function plannedFailoverTasks(deps: OrchestrationDeps): TaskDefinition<RecoverParams>[] {
  return [
    {
      name: 'stop-source-machine',
      async run(ctx) {
        const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
        const site = await deps.repos.sites.byId(rep.sourceSiteId);
        const fabric = deps.sites.fabric(site);
        const status = await fabric.status(rep.name);
        if (status.state === 'absent') {
          // Not run by the site's fabric (started by hand beside its agent): only the operator can vouch for it.
          if (!ctx.job.params.sourceShutDown) {
            throw new RefugeError('failed_precondition', `machine '${rep.name}' at site '${site.name}' is not run by the site's fabric, so it cannot be shut down from here`, {
              hint: 'shut it down, then request the planned failover with sourceShutDown: true (CLI: --source-shut-down)',
            });
          }
          ctx.result.sourceStopped = 'by the operator';
        } else {
          // Asked to shut down first; a guest that does not answer within 10 s is stopped hard (its writes are flushed).
          await fabric.stop(rep.name, { graceful: true, timeoutMs: 10_000 });
          ctx.result.sourceStopped = 'by the fabric';
        }
        ctx.result.stoppedAt ??= new Date().toISOString();
      },
    },
    {
      name: 'ship-final-point',
      async run(ctx) {
        const stoppedAt = ctx.result.stoppedAt as string;
        let rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
        const policy = await deps.repos.policies.byId(rep.policyId);
        // The heartbeat tells the agent to cut at once; a point captured after the stop holds every write.
        await deps.repos.replications.setFailover(rep.id, { ...rep.failover, cutAfter: stoppedAt });
        const deadline = Date.now() + Math.max(180_000, 3 * policy.crashIntervalSeconds * 1000);
        for (;;) {
          const latest = await deps.repos.replications.latestPoint(rep.id);
          if (latest && Date.parse(latest.capturedAt) >= Date.parse(stoppedAt)) {
            ctx.result.pointId = latest.id;
            ctx.result.finalPointCapturedAt = latest.capturedAt;
            break;
          }
          if (Date.now() > deadline) {
            const site = await deps.repos.sites.byId(rep.sourceSiteId);
            throw new RefugeError('unavailable', `the agent at site '${site.name}' did not ship a final point of '${rep.name}' after it stopped`, {
              hint: 'check the agent (`refuge machine show`); when the source site is gone, use an unplanned failover',
            });
          }
          ctx.progress(0.5, 'waiting for the final point from the source agent');
          await sleep(500, ctx.signal);
        }
        rep = await deps.repos.replications.byId(rep.id);
        const { cutAfter: _done, ...rest } = rep.failover;
        await deps.repos.replications.setFailover(rep.id, rest);
      },
    },
  ];
}
