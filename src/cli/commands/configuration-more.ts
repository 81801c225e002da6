import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { parseDuration } from '../../core/durations.js';
import { globals } from '../context.js';
import { done, show } from '../output.js';
import { group } from './topology.js';

/** `--network NAME[=ADDRESSES][@CIDR]` as the API's site network. */
export function parseNetwork(spec: string): { name: string; addresses: number; cidr?: string } {
  const m = /^([a-z0-9][a-z0-9-]*)(?:=(\d+))?(?:@(\S+))?$/.exec(spec);
  if (!m) throw new RefugeError('invalid_argument', `--network '${spec}' is not NAME[=ADDRESSES][@CIDR]`, { hint: 'e.g. --network lan=200@10.1.0.0/24' });
  return { name: m[1] as string, addresses: Number(m[2] ?? 0), ...(m[3] ? { cidr: m[3] } : {}) };
}

/** Deleting vaults, sites, policies and machines; changing policies and replications; the agents' status. */
export function registerConfigurationMoreCommands(program: Command): void {
  const vault = group(program, 'vault', '');
  vault.command('delete <name>').description('delete an empty vault').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', `/vaults/${encodeURIComponent(name)}`);
    done(json, { deleted: name }, `vault ${name} deleted`);
  });

  const site = group(program, 'site', '');
  site.command('delete <name>').description('delete a site nothing uses').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', await client.in(`/sites/${name}`));
    done(json, { deleted: name }, `site ${name} deleted`);
  });
  site.command('set-networks <name> <network...>').description('replace the networks of a site: NAME[=ADDRESSES][@CIDR] each')
    .action(async (name: string, networks: string[], _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      show(json, await client.request('PATCH', await client.in(`/sites/${name}`), { networks: networks.map(parseNetwork) }));
    });

  const policy = group(program, 'policy', '');
  policy.command('update <name>').description('change a policy')
    .option('--crash-interval <duration>').option('--retention <duration>').option('--rpo-threshold <duration>')
    .option('--app-interval <duration>', "application-consistent points ('none' to stop)")
    .option('--bandwidth-mibps <n>', "agents' upload limit, MiB/s ('none' for no limit)")
    .action(async (name: string, o: { crashInterval?: string; retention?: string; rpoThreshold?: string; appInterval?: string; bandwidthMibps?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const body = {
        ...(o.crashInterval ? { crashIntervalSeconds: parseDuration(o.crashInterval) } : {}),
        ...(o.retention ? { retentionHours: parseDuration(o.retention) / 3600 } : {}),
        ...(o.rpoThreshold ? { rpoThresholdSeconds: parseDuration(o.rpoThreshold) } : {}),
        ...(o.appInterval ? { appIntervalSeconds: o.appInterval === 'none' ? null : parseDuration(o.appInterval) } : {}),
        ...(o.bandwidthMibps ? { bandwidthMiBps: o.bandwidthMibps === 'none' ? null : Number(o.bandwidthMibps) } : {}),
      };
      show(json, await client.request('PATCH', await client.in(`/policies/${name}`), body));
    });
  policy.command('delete <name>').description('delete a policy no replication uses').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', await client.in(`/policies/${name}`));
    done(json, { deleted: name }, `policy ${name} deleted`);
  });

  const machine = group(program, 'machine', '');
  machine.command('delete <name>').description('forget a registered machine that is not replicated').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', await client.in(`/machines/${name}`));
    done(json, { deleted: name }, `machine ${name} deleted`);
  });
  machine.command('agents').description("the machines' agents: version, last heartbeat, connected or lost")
    .action(async (_o, cmd: Command) => {
      const { client, json } = globals(cmd);
      show(json, await client.get(await client.in('/agents')), ['machine', 'site', 'version', 'status', 'lastHeartbeatAt', 'lastError']);
    });

  const rep = group(program, 'replication', '');
  rep.command('update <name>').description("change a replication's policy or consistency group")
    .option('--policy <name>').option('--group <name>', "a consistency group ('none' to leave it)")
    .action(async (name: string, o: { policy?: string; group?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      if (!o.policy && !o.group) throw new RefugeError('invalid_argument', 'nothing to change', { hint: 'pass --policy NAME and/or --group NAME' });
      const body = { ...(o.policy ? { policy: o.policy } : {}), ...(o.group ? { group: o.group === 'none' ? null : o.group } : {}) };
      show(json, await client.request('PATCH', await client.in(`/replications/${name}`), body));
    });

  program.command('replicators').description('standalone replicators that reported to the vault, with what they commit')
    .action(async (_o, cmd: Command) => {
      const { client, json } = globals(cmd);
      show(json, await client.get(await client.in('/replicators')), ['site', 'url', 'reportedAt']);
    });
}
