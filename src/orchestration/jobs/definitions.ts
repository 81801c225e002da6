import type { JobDefinition } from '../../vault/jobs/definitions.js';
import type { OrchestrationDeps } from '../deps.js';
import { operationJob, type OperationParams } from './operation-job.js';
import { recoverMachineTasks, removeMachineTasks, type RecoverParams } from './recover-machine.js';

/** Every job type the vault runs, built once at start-up (no registration by import side effect). */
export function createJobDefinitions(deps: OrchestrationDeps): JobDefinition<never>[] {
  const defs: JobDefinition<never>[] = [];
  const add = <P>(d: JobDefinition<P>) => defs.push(d);

  add(operationJob<RecoverParams>(deps, 'test-failover', recoverMachineTasks(deps)));
  add(operationJob<OperationParams>(deps, 'test-failover-cleanup', removeMachineTasks(deps, 'test')));
  add(operationJob<RecoverParams>(deps, 'failover', recoverMachineTasks(deps)));
  add(
    operationJob<OperationParams>(deps, 'commit', [
      {
        // Commit makes the failover final (no other point can be chosen afterwards). The points stay in the
        // store: re-protect (issue 6) compares against them so that only differences travel back.
        name: 'commit-failover',
        async run(ctx) {
          const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
          ctx.result.committedPoint = rep.failover.failover?.pointId ?? null;
          ctx.result.committedAt = new Date().toISOString();
        },
      },
    ]),
  );
  add(
    operationJob<OperationParams>(deps, 'disable', [
      {
        name: 'delete-points',
        async run(ctx) {
          const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
          const store = await deps.sites.store(await deps.repos.sites.byId(rep.targetSiteId));
          const ids = await store.listPointIds(rep.id);
          for (const [i, id] of ids.entries()) {
            await store.deletePoint(rep.id, id);
            ctx.progress((i + 1) / ids.length);
          }
          ctx.result.deletedPoints = ids.length;
        },
      },
      {
        name: 'delete-replication',
        async run(ctx) {
          await deps.repos.replications.delete(ctx.job.replicationId as string);
        },
      },
    ]),
  );
  return defs;
}
