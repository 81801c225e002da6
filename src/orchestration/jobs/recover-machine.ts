import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { RefugeError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import type { TaskContext, TaskDefinition } from '../../vault/jobs/definitions.js';
import type { FailoverRecord } from '../../vault/model.js';
import type { OrchestrationDeps } from '../deps.js';
import type { OperationParams } from './operation-job.js';
import { reserveNics } from '../addressing.js';
import { chooseRecoveryMode, hydrateMachine, localDiskPath, provisionDisks, stopServing, type RecoveryMode } from './provision-disks.js';
import { resolvePoint, type PointChoice } from '../point-choice.js';

/** Parameters of a job that brings up a machine at the target site from a recovery point. */
export interface RecoverParams extends OperationParams {
  kind: FailoverRecord['kind'];
  /** The point choice (point-choice.ts), or `final` for the point a planned failover ships after stopping the source. */
  pointChoice: PointChoice | 'final';
  /** The point, when chosen at request time (every choice but `latest` and `final`). */
  pointId?: string;
  /** The recovered machine's name at the target site (`<name>-test` for a test failover). */
  targetMachine: string;
  requestedAt: string;
  /** How the disks are provided (provision-disks.ts); unset: instant where the site's fabric can, else restore-first. */
  mode?: RecoveryMode;
  /** Limit of the background copy of an instant recovery, MiB/s; unset: the site's store throughput limit, if any. */
  hydrationMiBps?: number;
  planned?: boolean;
  /** Planned failover: the operator confirms a source machine the fabric does not run is shut down. */
  sourceShutDown?: boolean;
}

/** The point a recover job boots: chosen at request time, shipped by an earlier task (`final`), or the latest now. */
async function pointOf(deps: OrchestrationDeps, ctx: TaskContext<RecoverParams>): Promise<string> {
  const p = ctx.job.params;
  if (typeof ctx.result.pointId === 'string') return ctx.result.pointId;
  if (p.pointId) return p.pointId;
  if (p.pointChoice === 'final') throw new RefugeError('internal', `job ${ctx.job.id} has no final point`);
  const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
  return (await resolvePoint(deps.repos.replications, rep, p.pointChoice)).id;
}

async function context(deps: OrchestrationDeps, ctx: TaskContext<RecoverParams>) {
  const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
  const site = await deps.repos.sites.byId(rep.targetSiteId);
  return { rep, site, store: await deps.sites.store(site), disksDir: deps.sites.disksDir(site, ctx.job.params.targetMachine) };
}

const recordKey = (kind: FailoverRecord['kind']) => (kind === 'test' ? 'test' : 'failover');

/**
 * The tasks that recover a machine: provide its disks from the point (restore-first: written out, every chunk
 * hash-checked; instant: served from the store over NBD), start it through the target site's fabric provider,
 * confirm it runs, and (instant) hydrate it onto local disks while it runs. Each task is idempotent, so a resumed
 * job redoes only what did not finish. The failover record is saved before the machine starts, so cleanup can
 * always find it.
 */
export function recoverMachineTasks(deps: OrchestrationDeps): TaskDefinition<RecoverParams>[] {
  return [
    {
      name: 'restore-disks',
      async run(ctx) {
        const { rep, site, store, disksDir } = await context(deps, ctx);
        const p = ctx.job.params;
        await store.blobs.refresh(); // points a standalone replicator committed in another process
        const point = await store.getPoint(rep.id, await pointOf(deps, ctx));
        // Where the machine ran before (kept across a change of recovery point): what a re-protect seeds from.
        const machine = await deps.repos.machines.byId(rep.machineId);
        const formerSource = rep.failover.failover?.formerSource ?? {
          siteId: rep.sourceSiteId,
          disks: machine.disks.flatMap((d) => (d.path ? [{ name: d.name, path: d.path }] : [])),
        };
        const record: FailoverRecord = {
          kind: p.kind,
          pointId: point.id,
          pointCapturedAt: point.capturedAt,
          machineName: p.targetMachine,
          siteId: site.id,
          disks: point.disks.map((d) => join(disksDir, `${d.name}.raw`)),
          requestedAt: p.requestedAt,
          ...(p.kind === 'failover' ? { formerSource, ...(p.planned ? { planned: true } : {}) } : {}),
        };
        const mode = chooseRecoveryMode(p.mode, deps.sites.fabric(site), site);
        record.mode = mode;
        // Addresses are chosen once, here, and kept on the record: a resumed job starts the machine with the same ones.
        const nics = await reserveNics(deps.repos, rep, site, p.kind, async (chosen) => {
          if (chosen.length > 0) record.nics = chosen;
          await deps.repos.replications.setFailover(rep.id, { ...rep.failover, [recordKey(p.kind)]: record });
        });
        ctx.result.addresses = nics;
        await provisionDisks(deps.sites, { site, store, point, disksDir, machine: p.targetMachine, mode, signal: ctx.signal, onProgress: (f, m) => ctx.progress(f, m) });
        ctx.result.mode = mode;
        ctx.result.pointId = point.id;
        ctx.result.pointCapturedAt = point.capturedAt;
        ctx.result.disks = record.disks;
      },
    },
    {
      name: 'start-machine',
      async run(ctx) {
        const { rep, site, store, disksDir } = await context(deps, ctx);
        const machine = await deps.repos.machines.byId(rep.machineId);
        const fabric = deps.sites.fabric(site);
        const name = ctx.job.params.targetMachine;
        const record = rep.failover[recordKey(ctx.job.params.kind)];
        const current = await fabric.status(name);
        if (current.state !== 'running' && current.state !== 'starting') {
          let disks = machine.disks.map((d) => ({ path: localDiskPath(disksDir, d.name), format: 'raw' as const }));
          if (record?.mode === 'instant') {
            // Serve the point (again, if this process is not the one that ran the previous task) and boot from it.
            const point = await store.getPoint(rep.id, record.pointId);
            const plan = await provisionDisks(deps.sites, { site, store, point, disksDir, machine: name, mode: 'instant' });
            disks = machine.disks.map((d) => plan.disks.find((x) => x.path === localDiskPath(disksDir, d.name)) ?? { path: localDiskPath(disksDir, d.name), format: 'raw' as const });
          }
          const nics = (record?.nics ?? []).map((n) => {
            const cidr = site.networks.find((s) => s.name === n.network)?.cidr;
            return { network: n.network, ...(cidr ? { cidr } : {}), ...(n.ipv4 ? { ipv4: n.ipv4 } : {}), ...(ctx.job.params.kind === 'test' ? { isolated: true } : {}) };
          });
          await fabric.start({ name, cpus: machine.cpus, memoryMiB: machine.memoryMiB, disks, boot: machine.boot, ...(nics.length > 0 ? { nics } : {}) });
        }
        ctx.result.machine = name;
        ctx.result.site = site.name;
        ctx.result.machineStartedAt = new Date().toISOString();
      },
    },
    {
      name: 'confirm-running',
      async run(ctx) {
        const { rep, site } = await context(deps, ctx);
        const fabric = deps.sites.fabric(site);
        const name = ctx.job.params.targetMachine;
        const deadline = Date.now() + 60_000;
        for (;;) {
          const s = await fabric.status(name);
          if (s.state === 'running') break;
          if (s.state === 'stopped' || s.state === 'absent' || Date.now() > deadline) {
            throw new RefugeError('unavailable', `machine '${name}' at site '${site.name}' is ${s.state}, not running`, {
              hint: `read its console with \`refuge machine console ${rep.name} --site ${site.name}\``,
            });
          }
          await sleep(250, ctx.signal);
        }
        const key = recordKey(ctx.job.params.kind);
        const record = rep.failover[key];
        if (record) await deps.repos.replications.setFailover(rep.id, { ...rep.failover, [key]: { ...record, startedAt: new Date().toISOString() } });
        ctx.result.runningAt = new Date().toISOString();
      },
    },
    {
      name: 'hydrate-disks',
      async run(ctx) {
        const { rep, site, store, disksDir } = await context(deps, ctx);
        const key = recordKey(ctx.job.params.kind);
        const record = rep.failover[key];
        if (record?.mode !== 'instant' || record.hydratedAt) return;
        const name = ctx.job.params.targetMachine;
        // A resumed job in a new vault process serves the point again; the machine's NBD client reconnects to it.
        await provisionDisks(deps.sites, { site, store, point: await store.getPoint(rep.id, record.pointId), disksDir, machine: name, mode: 'instant' });
        const mibps = ctx.job.params.hydrationMiBps ?? site.limits.storeThroughputMiBps;
        const status = await hydrateMachine(deps.sites, {
          site,
          fabric: deps.sites.fabric(site),
          machine: name,
          ...(mibps ? { bytesPerSecond: Math.round(mibps * 1024 * 1024) } : {}),
          signal: ctx.signal,
          onProgress: (s) => ctx.progress(s.totalBytes ? s.doneBytes / s.totalBytes : 0, `hydrating: ${s.state}`),
        });
        const now = await deps.repos.replications.byId(rep.id);
        const current = now.failover[key];
        if (current) await deps.repos.replications.setFailover(rep.id, { ...now.failover, [key]: { ...current, hydratedAt: new Date().toISOString() } });
        ctx.result.hydratedBytes = status.totalBytes;
        ctx.result.hydratedAt = new Date().toISOString();
      },
    },
  ];
}

/** Stops and removes a recovered machine and its disks (test failover cleanup). Idempotent. */
export function removeMachineTasks(deps: OrchestrationDeps, kind: FailoverRecord['kind'], o: { keepRecord?: boolean } = {}): TaskDefinition<OperationParams>[] {
  return [
    {
      name: 'remove-machine',
      async run(ctx) {
        const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
        const record = rep.failover[recordKey(kind)];
        if (!record) return;
        const site = await deps.repos.sites.byId(record.siteId);
        await deps.sites.fabric(site).delete(record.machineName);
        await stopServing(deps.sites, site, record.machineName);
        ctx.result.removedMachine = record.machineName;
      },
    },
    {
      name: 'delete-disks',
      async run(ctx) {
        const rep = await deps.repos.replications.byId(ctx.job.replicationId as string);
        const record = rep.failover[recordKey(kind)];
        if (!record) return;
        const site = await deps.repos.sites.byId(record.siteId);
        await rm(deps.sites.disksDir(site, record.machineName), { recursive: true, force: true });
        if (o.keepRecord) return; // changing the point: the next task writes the record again
        const { [recordKey(kind)]: _removed, ...rest } = rep.failover;
        await deps.repos.replications.setFailover(rep.id, rest);
      },
    },
  ];
}
