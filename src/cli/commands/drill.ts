import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { formatSeconds, parseDuration } from '../../core/durations.js';
import { globals } from '../context.js';
import { done, printFields, printJson, printTable, say } from '../output.js';
import { followJob } from '../progress.js';

interface RunView { id: string; job: string; outcome: string; rtoSeconds: number | null; startedAt: string; cleanedUp: boolean; error: string | null }
interface DrillView { name: string; replication?: string; plan?: string; intervalSeconds: number | null; nextRunAt: string | null; enabled: boolean; lastRun: RunView | null; lastSuccessfulRun: RunView | null; runs?: RunView[] }

function probeOf(o: { tcp?: string; http?: string; command?: string; probeTimeout?: string }) {
  const given = [o.tcp, o.http, o.command].filter((x) => x !== undefined);
  if (given.length !== 1) throw new RefugeError('invalid_argument', 'give exactly one probe: --tcp HOST:PORT, --http URL or --command CMD');
  const timeout = o.probeTimeout ? { timeoutSeconds: Math.round(parseDuration(o.probeTimeout)) } : {};
  if (o.tcp) {
    const m = /^(.+):(\d+)$/.exec(o.tcp);
    if (!m) throw new RefugeError('invalid_argument', `--tcp '${o.tcp}' is not HOST:PORT`);
    return { kind: 'tcp', host: m[1], port: Number(m[2]), ...timeout };
  }
  return o.http ? { kind: 'http', url: o.http, ...timeout } : { kind: 'command', command: o.command, ...timeout };
}

const last = (r: RunView | null) => (r ? `${r.outcome} at ${r.startedAt}${r.rtoSeconds !== null ? `, RTO ${formatSeconds(r.rtoSeconds)}` : ''}` : 'never');

/** `refuge drill ...`: scheduled test failovers with a health probe, and their measured RTO. */
export function registerDrillCommands(program: Command): void {
  const drill = program.command('drill').description('drills: scheduled test failovers with a health probe, automatic cleanup and a measured RTO');
  drill.command('create <name>')
    .description('create a drill of a replication or a recovery plan')
    .option('--replication <name>', 'the replication to drill')
    .option('--plan <name>', 'the recovery plan to drill')
    .option('--every <duration>', 'run on a schedule (e.g. 1d, 12h); without it the drill runs only on request')
    .option('--first <time>', 'when the first scheduled run is (ISO time; default: one interval from now)')
    .option('--tcp <host:port>', 'probe: a TCP connection ({address} is the test copy\'s address)')
    .option('--http <url>', 'probe: an HTTP GET answering 2xx/3xx')
    .option('--command <cmd>', 'probe: a command exiting 0 (gets REFUGE_MACHINE_MAP)')
    .option('--probe-timeout <duration>', 'how long the probe is retried while the copy boots (default 5m)')
    .action(async (name: string, o: { replication?: string; plan?: string; every?: string; first?: string; tcp?: string; http?: string; command?: string; probeTimeout?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const body = {
        name,
        ...(o.replication ? { replication: o.replication } : {}),
        ...(o.plan ? { plan: o.plan } : {}),
        ...(o.every ? { intervalSeconds: Math.round(parseDuration(o.every)) } : {}),
        ...(o.first ? { firstRunAt: o.first } : {}),
        probe: probeOf(o),
      };
      const r = await client.request<DrillView>('POST', await client.in('/drills'), body);
      if (json) return printJson(r);
      say(`drill ${name} created${r.nextRunAt ? `; first run at ${r.nextRunAt}` : ' (runs on request: refuge drill run)'}`);
    });
  drill.command('list').description('list drills with their last and last successful run').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const r = await client.get<{ items: DrillView[] }>(await client.in('/drills'));
    if (json) return printJson(r);
    printTable(r.items.map((d) => ({ ...d, subject: d.replication ?? `plan ${d.plan}`, every: d.intervalSeconds ? formatSeconds(d.intervalSeconds) : 'on request', last: last(d.lastRun), lastSuccessful: last(d.lastSuccessfulRun) })), ['name', 'subject', 'every', 'nextRunAt', 'last', 'lastSuccessful']);
  });
  drill.command('show <name>').description('show a drill and its recent runs').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const d = await client.get<DrillView>(await client.in(`/drills/${name}`));
    if (json) return printJson(d);
    printFields({ name: d.name, subject: d.replication ?? `plan ${d.plan}`, every: d.intervalSeconds ? formatSeconds(d.intervalSeconds) : 'on request', nextRunAt: d.nextRunAt, enabled: d.enabled, lastSuccessful: last(d.lastSuccessfulRun) });
    printTable((d.runs ?? []).map((r) => ({ ...r, rto: r.rtoSeconds !== null ? formatSeconds(r.rtoSeconds) : null })), ['startedAt', 'outcome', 'rto', 'cleanedUp', 'job', 'error']);
  });
  drill.command('run <name>').description('run a drill now and follow it').option('--no-wait', 'return at once')
    .action(async (name: string, o: { wait: boolean }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const run = await client.request<RunView>('POST', await client.in(`/drills/${name}/run`));
      if (!o.wait) return json ? printJson(run) : say(`drill ${name} started: job ${run.job}`);
      const job = await followJob(client, run.job, { quiet: json === true });
      const d = await client.get<DrillView>(await client.in(`/drills/${name}`));
      if (json) return printJson(d.lastRun);
      say(`drill ${name}: ${last(d.lastRun)}${d.lastRun?.cleanedUp ? ', cleaned up' : ''}`);
      if (job.state !== 'succeeded') throw new RefugeError('failed_precondition', job.error?.message ?? `drill ${name} ${job.state}`);
    });
  for (const [verb, enabled] of [['pause', false], ['unpause', true]] as const) {
    drill.command(`${verb} <name>`).description(`${enabled ? 'resume' : 'stop'} a drill's schedule`).action(async (name: string, _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      const d = await client.request<DrillView>('PATCH', await client.in(`/drills/${name}`), { enabled });
      if (json) return printJson(d);
      say(`drill ${name} ${enabled ? `scheduled again${d.nextRunAt ? `; next run at ${d.nextRunAt}` : ''}` : 'paused'}`);
    });
  }
  drill.command('delete <name>').description('delete a drill and its run history').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', await client.in(`/drills/${name}`));
    done(json, { deleted: name }, `drill ${name} deleted`);
  });
}
