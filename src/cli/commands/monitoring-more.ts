import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import type { ReadinessReport } from '../../vault/readiness/types.js';
import { globals } from '../context.js';
import { done, printJson, say, show } from '../output.js';
import { readPassword } from './access.js';
import { formatReport } from './monitoring.js';
import { group } from './topology.js';

/** Alerts and their channels in full, readiness reports, users' accounts, and the vault's health. */
export function registerMonitoringMoreCommands(program: Command): void {
  const alert = group(program, 'alert', '');
  alert.command('show <id>').description('show an alert').action(async (id: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    show(json, await client.get(await client.in(`/alerts/${id}`)));
  });
  alert.command('channel-list').description('list alert channels (secrets redacted)').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    show(json, await client.get(await client.in('/alert-channels')), ['name', 'kind', 'minSeverity', 'createdAt']);
  });
  alert.command('channel-show <name>').description('show an alert channel (secrets redacted)').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    show(json, await client.get(await client.in(`/alert-channels/${name}`)));
  });
  alert.command('channel-test <name>').description('send a test notice through a channel now').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const r = await client.request<{ delivered: boolean }>('POST', await client.in(`/alert-channels/${name}/test`));
    done(json, r, `test notice delivered through ${name}`);
  });
  alert.command('channel-delete <name>').description('delete an alert channel').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', await client.in(`/alert-channels/${name}`));
    done(json, { deleted: name }, `alert channel ${name} deleted`);
  });

  const readiness = program.command('readiness').description('readiness reports: every run of the checks (on demand, before operations, hourly)');
  readiness.command('list').description('list readiness reports, newest first')
    .option('--scope <scope>', 'replication, machine, plan or site').option('--subject <name>').option('--limit <n>', 'how many', '20')
    .action(async (o: { scope?: string; subject?: string; limit: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const q = new URLSearchParams({ limit: String(Number(o.limit)), ...(o.scope ? { scope: o.scope } : {}), ...(o.subject ? { subject: o.subject } : {}) });
      show(json, await client.get(await client.in(`/readiness?${q.toString()}`)), ['id', 'scope', 'subject', 'trigger', 'worst', 'createdAt']);
    });
  readiness.command('show <id>').description('show a readiness report with the fix for each problem').action(async (id: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    const r = await client.get<ReadinessReport>(await client.in(`/readiness/${id}`));
    if (json) printJson(r);
    else say(formatReport(r));
  });

  const user = group(program, 'user', '');
  user.command('update <name>').description("disable or enable a user, or set a new password")
    .option('--disable').option('--enable').option('--password-stdin', 'read the new password from standard input (else REFUGE_PASSWORD)')
    .action(async (name: string, o: { disable?: boolean; enable?: boolean; passwordStdin?: boolean }, cmd: Command) => {
      const { client, json } = globals(cmd);
      if (o.disable && o.enable) throw new RefugeError('invalid_argument', '--disable and --enable contradict each other');
      const password = o.passwordStdin || (!o.disable && !o.enable) ? await readPassword(o.passwordStdin) : undefined;
      const body = { ...(o.disable ? { disabled: true } : {}), ...(o.enable ? { disabled: false } : {}), ...(password ? { password } : {}) };
      show(json, await client.request('PATCH', `/users/${encodeURIComponent(name)}`, body));
    });

  program.command('health').description('is the vault up? (needs no token)').action(async (_o, cmd: Command) => {
    const { client, json, url } = globals(cmd);
    const r = await client.get<{ status: string; time: string }>('/health');
    done(json, { ...r, url }, `vault at ${url}: ${r.status} (its clock: ${r.time})`);
  });
}
