import { sleep } from '../../core/durations.js';
import type { TaskContext, TaskDefinition } from '../../vault/jobs/definitions.js';
import type { OrchestrationDeps } from '../deps.js';
import type { OperationParams } from './operation-job.js';

/**
 * Resync: the agent trusts nothing it remembers and compares every chunk of its disks with the store's latest
 * point (chunk hashes, then block digests), shipping only what differs. Done when a point captured after the
 * request is committed.
 */
export function resyncTasks(deps: OrchestrationDeps): TaskDefinition<OperationParams>[] {
  return [{ name: 'resync-point', run: (ctx) => awaitResyncedPoint(deps, ctx) }];
}

async function awaitResyncedPoint(deps: OrchestrationDeps, ctx: TaskContext<OperationParams>): Promise<void> {
  const id = ctx.job.replicationId as string;
  const rep = await deps.repos.replications.byId(id);
  const after = rep.failover.resyncAfter ?? new Date().toISOString();
  await deps.repos.replications.setFailover(id, { ...rep.failover, resyncAfter: after });
  for (;;) {
    const latest = await deps.repos.replications.latestPoint(id);
    if (latest && Date.parse(latest.capturedAt) >= Date.parse(after)) {
      ctx.result.resyncedPoint = { id: latest.id, capturedAt: latest.capturedAt, changedBytes: latest.changedBytes, storedBytes: latest.storedBytes };
      break;
    }
    ctx.progress(0.5, 'waiting for the agent to compare every chunk with the store');
    await sleep(500, ctx.signal);
  }
  const fresh = await deps.repos.replications.byId(id);
  const { resyncAfter: _done, ...rest } = fresh.failover;
  await deps.repos.replications.setFailover(id, rest);
}

/**
 * Repair: checks the replication's points in its target store, newest first (every blob read and hash-checked),
 * forgets the records of points the store lacks or that are damaged, removes their manifests, and then resyncs
 * against the newest sound point, so the next points build on data that is really there.
 */
export function repairTasks(deps: OrchestrationDeps): TaskDefinition<OperationParams>[] {
  return [
    {
      name: 'verify-points',
      async run(ctx) {
        const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
        const store = await deps.sites.store(await deps.repos.sites.byId(rep.targetSiteId));
        await store.blobs.refresh();
        const records = await deps.repos.replications.listPoints(rep.id);
        const stored = new Set(await store.listPointIds(rep.id));
        const dropped: { id: string; problem: string }[] = [];
        for (const [i, p] of records.entries()) {
          ctx.progress(i / Math.max(1, records.length), `checking point ${p.id}`);
          const problem = !stored.has(p.id)
            ? 'not in the store'
            : (await store.verifyPoint(await store.getPoint(rep.id, p.id)))[0]?.problem;
          if (!problem) break; // points build on their parents: the newest sound point vouches for the history
          dropped.push({ id: p.id, problem });
          if (stored.has(p.id)) await store.deletePoint(rep.id, p.id);
          await deps.repos.db.deleteFrom('recoveryPoints').where('id', '=', p.id).execute();
        }
        ctx.result.checkedPoints = records.length;
        ctx.result.droppedPoints = dropped;
      },
    },
    { name: 'resync-point', run: (ctx) => awaitResyncedPoint(deps, ctx) },
  ];
}
