import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import type { JobView } from '../../vault/jobs/definitions.js';
import type { ReadinessReport } from '../../vault/readiness/types.js';
import { globals } from '../context.js';
import { printJson, printTable, say } from '../output.js';

const MARK = { pass: 'PASS', warning: 'WARN', fail: 'FAIL' } as const;

/** A readiness report for people: one line per check with its measured value, and the fix under each problem. */
export function formatReport(r: ReadinessReport): string {
  const lines = [`Readiness of ${r.scope} ${r.subject} (${r.trigger}, ${r.createdAt}): ${r.worst.toUpperCase()}`];
  const width = Math.max(...r.results.map((x) => x.check.length));
  for (const x of r.results) {
    lines.push(`  ${MARK[x.status]}  ${x.check.padEnd(width)}  ${x.message}`);
    if (x.remediation) lines.push(`        ${' '.repeat(width)}  fix: ${x.remediation}`);
  }
  if (r.override) lines.push(`  overridden by ${r.override.by}: ${r.override.reason}`);
  const count = (s: string) => r.results.filter((x) => x.status === s).length;
  lines.push(`${count('pass')} passed, ${count('warning')} warning(s), ${count('fail')} failed${count('fail') > 0 ? ': fix the failures before enabling or failing over (an owner may override with a reason)' : ''}`);
  return lines.join('\n');
}

/** `refuge check`, `refuge alert list`, `refuge event list`, and the job operations cancel/resume/restart. */
export function registerMonitoringCommands(program: Command): void {
  program.command('check [replication]')
    .description('run the readiness checks: for a replication, a machine before enabling it, a recovery plan, or a site')
    .option('--machine <name>', 'a registered machine, checked as if enabled to --target')
    .option('--target <site>', 'the target site for --machine')
    .option('--policy <name>', 'the policy for --machine')
    .option('--plan <name>', 'a recovery plan')
    .option('--site <name>', 'a site (capacity for everything that targets it)')
    .action(async (replication: string | undefined, o: { machine?: string; target?: string; policy?: string; plan?: string; site?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const body = replication ? { replication } : o.machine ? { machine: o.machine, ...(o.target ? { targetSite: o.target } : {}), ...(o.policy ? { policy: o.policy } : {}) } : o.plan ? { plan: o.plan } : o.site ? { site: o.site } : undefined;
      if (!body) throw new RefugeError('invalid_argument', 'say what to check', { hint: 'refuge check REPLICATION, or --machine M --target SITE, --plan P, --site S' });
      if (o.machine && !o.target) throw new RefugeError('invalid_argument', '--machine needs --target SITE');
      const report = await client.request<ReadinessReport>('POST', await client.in('/readiness'), body);
      if (json) printJson(report);
      else say(formatReport(report));
      if (report.worst === 'fail') process.exitCode = 3;
    });

  const alert = program.command('alert').description('alerts: RPO, missing points, lost agents, failed jobs, certificates, capacity');
  alert.command('list').option('--all', 'resolved ones too').option('--kind <kind>').description('list active alerts (newest first)')
    .action(async (o: { all?: boolean; kind?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const q = new URLSearchParams({ ...(o.all ? {} : { state: 'active' }), ...(o.kind ? { kind: o.kind } : {}) });
      const r = await client.get<{ items: Record<string, unknown>[] }>(await client.in(`/alerts?${q.toString()}`));
      if (json) return printJson(r);
      printTable(r.items, ['severity', 'kind', 'subject', 'state', 'lastAt', 'message']);
    });
  alert.command('channel-add <name>')
    .description('send alerts to a webhook (--webhook URL) or by email (--smtp HOST:PORT --from A --to B)')
    .option('--webhook <url>').option('--secret <secret>', 'webhook signing secret')
    .option('--smtp <host:port>').option('--from <address>').option('--to <address...>')
    .option('--min-severity <severity>', 'info, warning or critical', 'warning')
    .action(async (name: string, o: { webhook?: string; secret?: string; smtp?: string; from?: string; to?: string[]; minSeverity: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      let body;
      if (o.webhook) body = { name, kind: 'webhook', minSeverity: o.minSeverity, config: { url: o.webhook, ...(o.secret ? { secret: o.secret } : {}) } };
      else if (o.smtp && o.from && o.to) {
        const [host, port] = o.smtp.split(':');
        body = { name, kind: 'smtp', minSeverity: o.minSeverity, config: { host, port: Number(port ?? 25), from: o.from, to: o.to } };
      } else throw new RefugeError('invalid_argument', 'give --webhook URL, or --smtp HOST:PORT with --from and --to');
      const r = await client.request('POST', await client.in('/alert-channels'), body);
      if (json) printJson(r);
      else say(`alert channel ${name} added`);
    });

  program.command('events').description('what happened in the vault, newest first')
    .option('--type <type>').option('--limit <n>', 'how many', '50')
    .action(async (o: { type?: string; limit: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const q = new URLSearchParams({ limit: String(Number(o.limit)), ...(o.type ? { type: o.type } : {}) });
      const r = await client.get<{ items: Record<string, unknown>[] }>(await client.in(`/events?${q.toString()}`));
      if (json) return printJson(r);
      printTable(r.items, ['at', 'severity', 'type', 'subject', 'message']);
    });

  const job = program.commands.find((c) => c.name() === 'job') ?? program.command('job');
  for (const [op, description] of [['cancel', 'cancel a job'], ['restart', 'run a failed or cancelled job again from its failed task']] as const) {
    job.command(`${op} <id>`).description(description).action(async (id: string, _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      const j = await client.request<JobView>('POST', await client.in(`/jobs/${id}/${op}`));
      if (json) printJson(j);
      else say(`job ${id}: ${j.state}${j.cancelRequested ? ' (cancel requested)' : ''}`);
    });
  }
  job.command('resume <id>').description('answer a job waiting for input (a manual approval)')
    .option('--reject', 'reject instead of approve').option('--comment <text>')
    .action(async (id: string, o: { reject?: boolean; comment?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const j = await client.request<JobView>('POST', await client.in(`/jobs/${id}/resume`), { approved: o.reject !== true, ...(o.comment ? { comment: o.comment } : {}) });
      if (json) printJson(j);
      else say(`job ${id}: ${j.state}`);
    });
}
