import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { parseDuration } from '../../core/durations.js';
import { globals } from '../context.js';
import { printFields, printJson, printTable } from '../output.js';

type Item = Record<string, unknown>;

/** `refuge vault create|list|show|set-location`, `refuge site ...`, `refuge policy ...`, `refuge machine ...`. */
export function registerConfigurationCommands(program: Command, vault: Command): void {
  const show = (cmd: Command, value: Item, columns?: string[]) => {
    if (globals(cmd).json) printJson(value);
    else if (columns) printTable((value.items as Item[]) ?? [], columns);
    else printFields(value);
  };

  vault.command('create <name>').description('create a vault').action(async (name: string, _o, cmd: Command) => {
    show(cmd, await globals(cmd).client.request('POST', '/vaults', { name }));
  });
  vault.command('list').description('list vaults').action(async (_o, cmd: Command) => {
    show(cmd, await globals(cmd).client.get('/vaults'), ['name', 'location', 'createdAt']);
  });
  vault.command('show [name]').description('show a vault').action(async (name: string | undefined, _o, cmd: Command) => {
    const { client } = globals(cmd);
    show(cmd, await client.get(`/vaults/${encodeURIComponent(name ?? (await client.vault()))}`));
  });
  vault.command('set-location <site>').description('record the site the vault lives at (recommended: the recovery site)')
    .action(async (site: string, _o, cmd: Command) => {
      const { client } = globals(cmd);
      show(cmd, await client.request('PATCH', await client.in(''), { location: site }));
    });

  const site = program.command('site').description('sites: where machines run and replicas are kept');
  site.command('create <name>')
    .description('create a site (filesystem replica store; fabric provider qemu unless --provider says otherwise)')
    .option('--vcpus <n>', 'vCPUs the site can give to recovered machines', '16')
    .option('--memory-mib <n>', 'memory the site can give, MiB', '32768')
    .option('--disk-gib <n>', 'disk space for recovered machines, GiB', '1024')
    .option('--provider <kind>', 'fabric provider: qemu, libvirt or command', 'qemu')
    .option('--fabric <json>', 'provider settings as JSON, e.g. {"libvirtUri":"qemu:///system"} or {"hooks":{"start":"/path",...}}')
    .action(async (name: string, o: { vcpus: string; memoryMib: string; diskGib: string; provider: string; fabric?: string }, cmd: Command) => {
      const { client } = globals(cmd);
      const capacity = { vcpus: Number(o.vcpus), memoryMiB: Number(o.memoryMib), diskGiB: Number(o.diskGib) };
      let fabric: unknown;
      try {
        fabric = o.fabric ? JSON.parse(o.fabric) : undefined;
      } catch {
        throw new RefugeError('invalid_argument', `--fabric is not JSON: ${o.fabric}`);
      }
      show(cmd, await client.request('POST', await client.in('/sites'), { name, capacity, provider: o.provider, ...(fabric ? { fabric } : {}) }));
    });
  site.command('update <name>')
    .description("change a site's capacity (the self-hosted 'raise your quota') or throughput limits")
    .option('--vcpus <n>').option('--memory-mib <n>').option('--disk-gib <n>')
    .option('--link-mibps <n>', 'throughput of the link into the site, MiB/s')
    .option('--store-mibps <n>', 'throughput of the replica store, MiB/s')
    .action(async (name: string, o: { vcpus?: string; memoryMib?: string; diskGib?: string; linkMibps?: string; storeMibps?: string }, cmd: Command) => {
      const { client } = globals(cmd);
      const current = await client.get<{ capacity: { vcpus: number; memoryMiB: number; diskGiB: number }; limits: Record<string, number> }>(await client.in(`/sites/${name}`));
      const capacity = {
        vcpus: o.vcpus ? Number(o.vcpus) : current.capacity.vcpus,
        memoryMiB: o.memoryMib ? Number(o.memoryMib) : current.capacity.memoryMiB,
        diskGiB: o.diskGib ? Number(o.diskGib) : current.capacity.diskGiB,
      };
      const limits = { ...current.limits, ...(o.linkMibps ? { linkThroughputMiBps: Number(o.linkMibps) } : {}), ...(o.storeMibps ? { storeThroughputMiBps: Number(o.storeMibps) } : {}) };
      show(cmd, await client.request('PATCH', await client.in(`/sites/${name}`), { capacity, limits }));
    });
  site.command('list').description('list sites').action(async (_o, cmd: Command) => {
    const { client } = globals(cmd);
    show(cmd, await client.get(await client.in('/sites')), ['name', 'provider', 'capacity']);
  });
  site.command('show <name>').description('show a site').action(async (name: string, _o, cmd: Command) => {
    const { client } = globals(cmd);
    show(cmd, await client.get(await client.in(`/sites/${name}`)));
  });

  const policy = program.command('policy').description('replication policies');
  policy.command('create <name>')
    .description('create a policy (defaults as ASR: points every 5m, 24h retention)')
    .option('--crash-interval <duration>', 'how often crash-consistent points are cut (e.g. 30s, 5m)', '5m')
    .option('--retention <duration>', 'how long points are kept (e.g. 24h, 7d)', '24h')
    .option('--rpo-threshold <duration>', 'RPO above which health turns to warning', '15m')
    .option('--chunk-size-kib <n>', "chunk size of its replications in KiB, a power of two from 4 to 1024 (default: the store's, 256); small chunks suit disks with small random writes; fixed once created", (v) => Number(v))
    .action(async (name: string, o: { crashInterval: string; retention: string; rpoThreshold: string; chunkSizeKib?: number }, cmd: Command) => {
      const { client } = globals(cmd);
      show(cmd, await client.request('POST', await client.in('/policies'), {
        name,
        crashIntervalSeconds: parseDuration(o.crashInterval),
        retentionHours: parseDuration(o.retention) / 3600,
        rpoThresholdSeconds: parseDuration(o.rpoThreshold),
        ...(o.chunkSizeKib !== undefined ? { chunkSizeKiB: o.chunkSizeKib } : {}),
      }));
    });
  policy.command('list').description('list policies').action(async (_o, cmd: Command) => {
    const { client } = globals(cmd);
    show(cmd, await client.get(await client.in('/policies')), ['name', 'crashIntervalSeconds', 'retentionHours', 'rpoThresholdSeconds', 'chunkSizeKiB']);
  });
  policy.command('show <name>').description('show a policy').action(async (name: string, _o, cmd: Command) => {
    const { client } = globals(cmd);
    show(cmd, await client.get(await client.in(`/policies/${name}`)));
  });

  const machine = program.command('machine').description('machines registered by their agents, and machines a site runs');
  machine.command('list').description('list registered machines').action(async (_o, cmd: Command) => {
    const { client } = globals(cmd);
    const r = await client.get<{ items: Item[] }>(await client.in('/machines'));
    if (globals(cmd).json) return printJson(r);
    printTable(r.items.map((m) => ({ ...m, lastHeartbeat: (m.agent as Item).lastHeartbeatAt })), ['name', 'site', 'cpus', 'memoryMiB', 'lastHeartbeat']);
  });
  machine.command('show <name>').description('show a registered machine').action(async (name: string, _o, cmd: Command) => {
    const { client } = globals(cmd);
    show(cmd, await client.get(await client.in(`/machines/${name}`)));
  });
  machine.command('status <name>').requiredOption('--site <site>', 'the site running it')
    .description('state of a machine run by a site (e.g. a failed-over or test copy)')
    .action(async (name: string, o: { site: string }, cmd: Command) => {
      const { client } = globals(cmd);
      show(cmd, await client.get(await client.in(`/sites/${o.site}/machines/${name}`)));
    });
  machine.command('console <name>').requiredOption('--site <site>', 'the site running it')
    .description("print the serial console of a machine run by a site")
    .action(async (name: string, o: { site: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      const text = await client.text(await client.in(`/sites/${o.site}/machines/${name}/console`));
      if (json) printJson({ machine: name, site: o.site, console: text });
      else process.stdout.write(text);
    });
}
