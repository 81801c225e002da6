import { rm } from 'node:fs/promises';
import type { JobDefinition, TaskContext } from '../../vault/jobs/definitions.js';
import type { OrchestrationDeps } from '../deps.js';
import { repairTasks, resyncTasks } from './maintenance.js';
import { operationJob, type OperationParams } from './operation-job.js';
import { plannedFailoverTasks } from './planned-failover.js';
import { recoverMachineTasks, removeMachineTasks, type RecoverParams } from './recover-machine.js';
import { reprotectTasks } from './reprotect.js';

/** Every job type the vault runs, built once at start-up (no registration by import side effect). */
export function createJobDefinitions(deps: OrchestrationDeps): JobDefinition<never>[] {
  const defs: JobDefinition<never>[] = [];
  const add = <P>(d: JobDefinition<P>) => defs.push(d);

  // A cancelled failover takes down what it started at the target: the source stays protected. (A failed one
  // keeps it, so a restart continues from the failed task.)
  const undoFailover = async (ctx: TaskContext<RecoverParams>) => {
    const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
    const record = rep.failover.failover;
    if (!record) return;
    const site = await deps.repos.sites.byId(record.siteId);
    await deps.sites.fabric(site).delete(record.machineName);
    await rm(deps.sites.disksDir(site, record.machineName), { recursive: true, force: true });
    const { failover: _undone, cutAfter: _cut, ...rest } = rep.failover;
    await deps.repos.replications.setFailover(rep.id, rest);
  };

  add(operationJob<RecoverParams>(deps, 'test-failover', recoverMachineTasks(deps)));
  add(operationJob<OperationParams>(deps, 'test-failover-cleanup', removeMachineTasks(deps, 'test')));
  add(operationJob<RecoverParams>(deps, 'failover', recoverMachineTasks(deps), { afterCancel: undoFailover }));
  add(operationJob<RecoverParams>(deps, 'planned-failover', [...plannedFailoverTasks(deps), ...recoverMachineTasks(deps)], { afterCancel: undoFailover }));
  add(operationJob<RecoverParams>(deps, 'failback', [...plannedFailoverTasks(deps), ...recoverMachineTasks(deps)], { afterCancel: undoFailover }));
  // Another point for a failed-over machine: take down the machine booted from the current one, boot the new one.
  add(operationJob<RecoverParams>(deps, 'change-recovery-point', [...removeMachineTasks(deps, 'failover', { keepRecord: true }), ...recoverMachineTasks(deps)]));
  add(
    operationJob<OperationParams>(deps, 'commit', [
      {
        // Commit makes the failover final (no other point can be chosen afterwards). Re-protect then seeds the
        // other direction from the disks at the former source, so only differences travel back.
        name: 'commit-failover',
        async run(ctx) {
          const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
          ctx.result.committedPoint = rep.failover.failover?.pointId ?? null;
          ctx.result.committedAt = new Date().toISOString();
        },
      },
    ]),
  );
  add(operationJob<OperationParams>(deps, 'reprotect', reprotectTasks(deps)));
  add(operationJob<OperationParams>(deps, 'resync', resyncTasks(deps)));
  add(operationJob<OperationParams>(deps, 'repair', repairTasks(deps)));
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
