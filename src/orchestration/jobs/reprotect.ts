import { stat } from 'node:fs/promises';
import { RefugeError } from '../../core/errors.js';
import { importImages } from '../../store/import-image.js';
import { replicationChunkSize } from '../../vault/model.js';
import type { TaskDefinition } from '../../vault/jobs/definitions.js';
import type { OrchestrationDeps } from '../deps.js';
import type { OperationParams } from './operation-job.js';

/**
 * Re-protect after a committed failover (orchestration README, "Re-protect"): the machine now runs at the
 * recovery site; it becomes the protected source and its former site the target. The target is seeded from the
 * disks still at the former site, hashed where they lie into that site's replica store (no transfer), so the
 * agent at the new source, comparing its disks with the seed chunk by chunk and block by block, ships only what
 * differs. Without those disks (gone, or resized) the agent's first point is a full copy.
 *
 * Every task is idempotent: a re-run (restart, or a new request after a failure) finds what is done and skips it.
 */
export function reprotectTasks(deps: OrchestrationDeps): TaskDefinition<OperationParams>[] {
  const load = async (id: string) => {
    const rep = await deps.repos.replications.byId(id);
    const record = rep.failover.failover;
    if (!record?.formerSource) {
      throw new RefugeError('failed_precondition', `replication '${rep.name}' has no record of the site it failed over from`, { hint: 'disable and enable replication again' });
    }
    return { rep, record, former: record.formerSource };
  };
  return [
    {
      name: 'stop-former-machine',
      async run(ctx) {
        const { rep, former } = await load(ctx.job.replicationId as string);
        // ASR turns the old machine off: it must never write to disks that become a replica.
        const site = await deps.repos.sites.byId(former.siteId);
        const fabric = deps.sites.fabric(site);
        if ((await fabric.status(rep.name)).state !== 'absent') await fabric.stop(rep.name, { graceful: false });
      },
    },
    {
      name: 'seed-from-former-disks',
      async run(ctx) {
        const { rep, former } = await load(ctx.job.replicationId as string);
        if (rep.failover.seedPointId || ctx.result.seed) return;
        const site = await deps.repos.sites.byId(former.siteId);
        const store = await deps.sites.store(site);
        // Points an earlier protection left in that store (two directions ago: a failback's re-protect forward) are
        // not this history's, and go once the seed is in. Until then the latest serves as the import's parent: the
        // chunks still equal to it are only hashed, not compressed and stored again (most of them, on a failback).
        const earlier = await store.listPointIds(rep.id);
        const machine = await deps.repos.machines.byId(rep.machineId);
        const usable = await Promise.all(
          machine.disks.map(async (d) => {
            const path = former.disks.find((f) => f.name === d.name)?.path;
            const size = path ? await stat(path).then((s) => s.size, () => -1) : -1;
            return size === d.sizeBytes && path ? { name: d.name, path } : undefined;
          }),
        );
        if (usable.some((u) => u === undefined) || usable.length === 0) {
          for (const id of earlier) await store.deletePoint(rep.id, id);
          ctx.result.seed = { mode: 'full-copy', reason: `the disks at site '${site.name}' are gone or resized` };
          return;
        }
        const disks = usable as { name: string; path: string }[];
        const started = Date.now();
        const policy = await deps.repos.policies.byId(rep.policyId);
        const seed = await importImages(store, {
          replicationId: rep.id,
          disks,
          chunkSize: replicationChunkSize(policy, store.chunkSize),
          parent: earlier.at(-1) ?? null,
          signal: ctx.signal,
          onProgress: (done, total) => ctx.progress(done / Math.max(1, total), `hashing the disks at site '${site.name}'`),
        });
        for (const id of earlier) await store.deletePoint(rep.id, id); // the seed's tree keeps what it references
        const fresh = await deps.repos.replications.byId(rep.id);
        await deps.repos.replications.setFailover(rep.id, { ...fresh.failover, seedPointId: seed.id });
        ctx.result.seed = { mode: 'former-disks', pointId: seed.id, hashedBytes: disks.length ? seed.disks.reduce((n, d) => n + d.sizeBytes, 0) : 0, seconds: (Date.now() - started) / 1000 };
      },
    },
    {
      name: 'reverse-direction',
      async run(ctx) {
        const { rep, former } = await load(ctx.job.replicationId as string);
        if (rep.sourceSiteId === former.siteId) {
          const newSource = rep.targetSiteId;
          await deps.repos.db.transaction().execute(async (trx) => {
            // The old direction's point records name points in the other site's store: a new history starts.
            await deps.repos.replications.deletePoints(rep.id, trx);
            await deps.repos.replications.setDirection(rep.id, newSource, former.siteId, trx);
          });
          await deps.repos.machines.setSite(rep.machineId, newSource);
        }
        const fresh = await deps.repos.replications.byId(rep.id);
        await deps.repos.replications.setFailover(rep.id, { ...fresh.failover, homeSiteId: fresh.failover.homeSiteId ?? former.siteId, reprotectShipping: true });
        const [from, to] = await Promise.all([deps.repos.sites.byId(fresh.sourceSiteId), deps.repos.sites.byId(fresh.targetSiteId)]);
        ctx.result.direction = { from: from.name, to: to.name };
      },
    },
    {
      name: 'await-first-point',
      async run(ctx) {
        const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
        const site = await deps.repos.sites.byId(rep.sourceSiteId);
        for (;;) {
          // Listening before looking: a point recorded in between still wakes the wait below at once. The timeout
          // catches a point recorded by another vault process.
          const recorded = deps.repos.replications.nextPointRecorded(rep.id, 500, ctx.signal);
          const first = await deps.repos.replications.latestPoint(rep.id);
          if (first) {
            ctx.result.firstPoint = { id: first.id, capturedAt: first.capturedAt, changedBytes: first.changedBytes, storedBytes: first.storedBytes };
            break;
          }
          ctx.progress(0.5, `waiting for the agent at site '${site.name}' to ship the differences`);
          await recorded;
          ctx.signal.throwIfAborted();
        }
        // The failed-over machine is the protected source now: its failover is history.
        const fresh = await deps.repos.replications.byId(rep.id);
        const { failover: _done, seedPointId: _seed, reprotectShipping: _shipping, ...rest } = fresh.failover;
        await deps.repos.replications.setFailover(rep.id, rest);
      },
    },
  ];
}
