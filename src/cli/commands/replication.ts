import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { formatBytes, formatSeconds, sleep } from '../../core/durations.js';
import type { JobView } from '../../vault/jobs/definitions.js';
import type { ApiClient } from '../client.js';
import { globals } from '../context.js';
import { printFields, printJson, printTable, say } from '../output.js';
import { ProgressLine, bytesProgress, followJob } from '../progress.js';

/** The API's replication representation, as far as the CLI reads it. */
export interface ReplicationInfo {
  name: string;
  state: string;
  testFailoverState: string;
  health: string;
  healthErrors: { message: string }[];
  allowedOperations: string[];
  rpo: { seconds: number; latestPoint: { id: string; capturedAt: string } } | null;
  progress: { phase: string; doneBytes: number; totalBytes: number; pendingBytes?: number } | null;
  [k: string]: unknown;
}

export const getReplication = async (client: ApiClient, name: string) =>
  client.get<ReplicationInfo>(await client.in(`/replications/${name}`));

/** Redraws seeding/scan progress until the replication is protected (or `until` says stop). */
export async function watchReplication(client: ApiClient, name: string, until: (r: ReplicationInfo) => boolean, quiet = false): Promise<ReplicationInfo> {
  const line = new ProgressLine();
  for (;;) {
    const r = await getReplication(client, name);
    const p = r.progress;
    const phase = r.state === 'seeding' ? 'seeding' : (p?.phase ?? r.state);
    // The agent reads ahead of its uploads: what reached the target is what it read less what is still pending.
    const shipped = p ? Math.max(0, p.doneBytes - (p.pendingBytes ?? 0)) : 0;
    const pending = p?.pendingBytes ? ` (${formatBytes(p.pendingBytes)} pending)` : '';
    if (!quiet) line.update(`  ${name} ${r.state.padEnd(9)} ${p && p.totalBytes > 0 ? `${bytesProgress(shipped, p.totalBytes)} shipped${pending}` : ''} ${r.rpo ? `RPO ${formatSeconds(r.rpo.seconds)}` : phase}`);
    if (until(r)) {
      if (!quiet) line.done();
      return r;
    }
    await sleep(500);
  }
}

export function registerReplicationCommands(program: Command): void {
  const rep = program.command('replication').description('protect machines and watch their replication');
  rep.command('enable <machine>')
    .description('start replicating a registered machine to a target site')
    .requiredOption('--target <site>', 'the recovery site')
    .option('--policy <name>', 'the replication policy', 'default')
    .option('--no-wait', 'return at once instead of showing seeding progress')
    .action(async (machine: string, o: { target: string; policy: string; wait: boolean }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const r = await client.request<ReplicationInfo>('POST', await client.in('/replications'), { machine, policy: o.policy, targetSite: o.target });
      if (json) return printJson(r);
      say(`replication ${r.name} enabled: ${r.state}`);
      if (o.wait) {
        const done = await watchReplication(client, machine, (x) => x.state !== 'seeding');
        say(`replication ${done.name} is ${done.state}`);
      }
    });
  rep.command('list').description('list replications').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const r = await client.get<{ items: ReplicationInfo[] }>(await client.in('/replications'));
    if (json) return printJson(r);
    printTable(
      r.items.map((x) => ({ ...x, rpo: x.rpo ? formatSeconds(x.rpo.seconds) : null, allowed: x.allowedOperations })),
      ['name', 'state', 'health', 'rpo', 'targetSite', 'allowed'],
    );
  });
  rep.command('show <name>').description('show a replication with its health, RPO and allowed operations')
    .action(async (name: string, _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      const r = await getReplication(client, name);
      if (json) return printJson(r);
      printFields({
        ...r,
        rpo: r.rpo ? `${formatSeconds(r.rpo.seconds)} (point ${r.rpo.latestPoint.id} at ${r.rpo.latestPoint.capturedAt})` : 'no point yet',
        healthErrors: r.healthErrors.map((e) => e.message).join('; ') || '-',
        progress: r.progress ? `${r.progress.phase} ${formatBytes(r.progress.doneBytes)}/${formatBytes(r.progress.totalBytes)}` : '-',
        allowedOperations: r.allowedOperations.join(', ') || 'none',
      });
    });
  rep.command('watch <name>').description('follow replication progress and RPO until interrupted (or --until-protected)')
    .option('--until-protected', 'stop once the replication is protected')
    .action(async (name: string, o: { untilProtected?: boolean }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const last = await watchReplication(client, name, (r) => o.untilProtected === true && r.state !== 'seeding', json === true);
      if (json) printJson(last);
    });

  const point = program.command('point').description('recovery points');
  point.command('list <replication>').description('list recovery points, newest first')
    .option('--limit <n>', 'how many', '20')
    .action(async (replication: string, o: { limit: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const r = await client.get<{ items: Record<string, unknown>[] }>(await client.in(`/replications/${replication}/points?limit=${Number(o.limit)}`));
      if (json) return printJson(r);
      printTable(r.items.map((p) => ({ ...p, changed: formatBytes(Number(p.changedBytes)) })), ['id', 'capturedAt', 'consistency', 'changed']);
    });
  point.command('show <replication> <point>').description('show a recovery point with its disks')
    .action(async (replication: string, id: string, _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      const r = await client.get<Record<string, unknown>>(await client.in(`/replications/${replication}/points/${id}`));
      if (json) printJson(r);
      else printFields(r);
    });

  const operation = (name: string, description: string, o: { point?: boolean; shutDown?: boolean } = {}) => {
    const c = program.command(`${name} <replication>`).description(description).option('--no-wait', 'print the job and return at once');
    if (o.point) {
      c.option('--point <choice>', "recovery point: latest, latest-processed, latest-app-consistent, latest-multi-machine or a point id", 'latest');
      c.option('--mode <mode>', 'instant (start from the replica store, hydrate in the background; the default where the site can) or restore-first');
      c.option('--hydration-mibps <n>', 'limit of the background hydration copy of an instant recovery, MiB/s');
    }
    if (o.shutDown) c.option('--source-shut-down', 'the source machine is not run by its site\'s fabric and you have shut it down');
    c.action(async (replication: string, opts: { wait: boolean; point?: string; sourceShutDown?: boolean; mode?: string; hydrationMibps?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      if (opts.mode !== undefined && opts.mode !== 'instant' && opts.mode !== 'restore-first') {
        throw new RefugeError('invalid_argument', `--mode must be instant or restore-first, not '${opts.mode}'`);
      }
      const body = {
        ...(o.point ? { point: opts.point ?? 'latest' } : {}),
        ...(opts.sourceShutDown ? { sourceShutDown: true } : {}),
        ...(opts.mode ? { mode: opts.mode } : {}),
        ...(opts.hydrationMibps ? { hydrationMiBps: Number(opts.hydrationMibps) } : {}),
      };
      const job = await client.request<JobView>('POST', await client.in(`/replications/${replication}/${name}`), body);
      if (!opts.wait || name === 'cancel') return json ? printJson(job) : say(`job ${job.id} ${name === 'cancel' ? 'cancelling' : 'started'} (${job.type})`);
      if (!json) say(`${name} ${replication}: job ${job.id}`);
      const done = await followJob(client, job.id, { quiet: json === true });
      if (json) printJson(done);
      if (done.state !== 'succeeded') {
        throw new RefugeError('failed_precondition', `${name} of ${replication} failed: ${done.error?.message ?? 'unknown error'}`, done.error?.hint ? { hint: done.error.hint } : {});
      }
    });
  };
  // The operations ASR offers on a replicated item; `refuge replication show` lists which are allowed now.
  operation('test-failover', 'start a copy at the target site in isolation, from a recovery point; replication continues', { point: true });
  operation('test-failover-cleanup', 'remove the test failover copy');
  operation('planned-failover', 'stop the source machine, ship its last writes, start it at the target site (no data loss)', { shutDown: true });
  operation('failover', 'unplanned failover: start the machine at the target site from a recovery point (the source may be gone)', { point: true });
  operation('change-recovery-point', 'boot a failed-over machine from another recovery point (before commit)', { point: true });
  operation('commit', 'make a failover final');
  operation('reprotect', 'replicate a committed failover back to its former site, sending only the differences');
  operation('failback', 'planned failover of a re-protected machine back to its home site (then commit and re-protect)', { shutDown: true });
  operation('resync', 'compare every chunk with the store and ship what differs');
  operation('repair', 'check the points in the store, drop damaged ones, and resync');
  operation('cancel', 'cancel the operation job running on a replication');
  operation('disable', 'stop replicating and delete the recovery points');

  const job = program.command('job').description('jobs: long-running operations with tasks and progress');
  job.command('list').option('--replication <name>').option('--state <state>').description('list recent jobs')
    .action(async (o: { replication?: string; state?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const q = new URLSearchParams({ ...(o.replication ? { replication: o.replication } : {}), ...(o.state ? { state: o.state } : {}) });
      const r = await client.get<{ items: JobView[] }>(await client.in(`/jobs${q.size ? `?${q.toString()}` : ''}`));
      if (json) return printJson(r);
      printTable(r.items.map((j) => ({ ...j, progress: `${Math.round(j.progress * 100)}%` })), ['id', 'type', 'state', 'progress', 'createdAt']);
    });
  job.command('show <id>').description('show a job and its tasks').action(async (id: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const j = await client.get<JobView>(await client.in(`/jobs/${id}`));
    if (json) return printJson(j);
    printFields({ id: j.id, type: j.type, state: j.state, progress: `${Math.round(j.progress * 100)}%`, error: j.error?.message ?? null, result: j.result });
    printTable(j.tasks.map((t) => ({ ...t, progress: `${Math.round(t.progress * 100)}%` })), ['seq', 'name', 'state', 'progress', 'message']);
  });
  job.command('watch <id>').description('follow a job until it ends').action(async (id: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const j = await followJob(client, id, { quiet: json === true });
    if (json) printJson(j);
    if (j.state !== 'succeeded') throw new RefugeError('failed_precondition', `job ${id} ${j.state}: ${j.error?.message ?? ''}`);
  });
}
