import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { globals } from '../context.js';
import { done, show } from '../output.js';

type Item = Record<string, unknown>;

/** A command group the program may already have (another module may register `plan` too): reuse it. */
export const group = (parent: Command, name: string, description: string): Command =>
  parent.commands.find((c) => c.name() === name) ?? parent.command(name).description(description);
const has = (parent: Command, name: string) => parent.commands.some((c) => c.name() === name);

async function planGroups(file: string): Promise<Item> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Item;
  } catch (err) {
    throw RefugeError.wrap(err, `cannot read the plan file ${file}`, 'invalid_argument');
  }
}

/** `refuge network-mapping ...`, `refuge group ...` (consistency groups), and the configuration of recovery plans. */
export function registerTopologyCommands(program: Command): void {
  const nm = program.command('network-mapping').description('which network of the recovery site replaces which network of the primary');
  nm.command('create <name>')
    .requiredOption('--source-site <site>').requiredOption('--source-network <network>')
    .requiredOption('--target-site <site>').requiredOption('--target-network <network>')
    .option('--test-network <network>', 'network of the target site for test failovers (isolated)')
    .description('map a source network to a target network')
    .action(async (name: string, o: { sourceSite: string; sourceNetwork: string; targetSite: string; targetNetwork: string; testNetwork?: string }, cmd: Command) => {
      const { client, json } = globals(cmd);
      show(json, await client.request('POST', await client.in('/network-mappings'), { name, ...o }));
    });
  nm.command('list').description('list network mappings').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    show(json, await client.get(await client.in('/network-mappings')), ['name', 'sourceSite', 'sourceNetwork', 'targetSite', 'targetNetwork', 'testNetwork']);
  });
  nm.command('show <name>').description('show a network mapping').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    show(json, await client.get(await client.in(`/network-mappings/${name}`)));
  });
  nm.command('delete <name>').description('delete a network mapping').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', await client.in(`/network-mappings/${name}`));
    done(json, { deleted: name }, `network mapping ${name} deleted`);
  });

  const cg = program.command('group').description('consistency groups: replications whose points are cut together');
  cg.command('create <name>').description('create a consistency group (add replications with `refuge replication update R --group G`)')
    .action(async (name: string, _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      show(json, await client.request('POST', await client.in('/consistency-groups'), { name }));
    });
  cg.command('list').description('list consistency groups').action(async (_o, cmd: Command) => {
    const { client, json } = globals(cmd);
    show(json, await client.get(await client.in('/consistency-groups')), ['name', 'replications', 'createdAt']);
  });
  cg.command('show <name>').description('show a consistency group').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    show(json, await client.get(await client.in(`/consistency-groups/${name}`)));
  });
  cg.command('delete <name>').description('delete a consistency group').action(async (name: string, _o, cmd: Command) => {
    const { client, json } = globals(cmd);
    await client.request('DELETE', await client.in(`/consistency-groups/${name}`));
    done(json, { deleted: name }, `consistency group ${name} deleted`);
  });

  // Recovery plans as configuration. Running them (and their own commands) may come from another module: the
  // `plan` group is shared, and a subcommand it already has is left alone.
  const plan = group(program, 'plan', 'recovery plans: ordered groups of machines with actions before and after each');
  const file = '--file <plan.json>';
  const fileHelp = 'JSON file: { "description": "...", "groups": [{ "name", "replications": [...], "pre": [...], "post": [...] }] }; actions are { "name", "kind": "manual"|"script"|"webhook", "target", "timeoutSeconds" }';
  if (!has(plan, 'create')) {
    plan.command('create <name>').requiredOption(file, fileHelp).description('create a recovery plan from a JSON file')
      .action(async (name: string, o: { file: string }, cmd: Command) => {
        const { client, json } = globals(cmd);
        show(json, await client.request('POST', await client.in('/recovery-plans'), { name, ...(await planGroups(o.file)) }));
      });
  }
  if (!has(plan, 'update')) {
    plan.command('update <name>').requiredOption(file, fileHelp).description('replace the description and groups of a recovery plan')
      .action(async (name: string, o: { file: string }, cmd: Command) => {
        const { client, json } = globals(cmd);
        const { description, groups } = await planGroups(o.file);
        show(json, await client.request('PATCH', await client.in(`/recovery-plans/${name}`), { ...(description !== undefined ? { description } : {}), ...(groups !== undefined ? { groups } : {}) }));
      });
  }
  if (!has(plan, 'list')) {
    plan.command('list').description('list recovery plans').action(async (_o, cmd: Command) => {
      const { client, json } = globals(cmd);
      const r = await client.get<{ items: { groups: { name: string; replications: string[] }[] }[] }>(await client.in('/recovery-plans'));
      show(json, json ? r : { items: r.items.map((p) => ({ ...p, groups: p.groups.map((g) => g.name).join(' -> '), machines: p.groups.reduce((n, g) => n + g.replications.length, 0) })) }, ['name', 'groups', 'machines', 'description']);
    });
  }
  if (!has(plan, 'show')) {
    plan.command('show <name>').description('show a recovery plan').action(async (name: string, _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      show(json, await client.get(await client.in(`/recovery-plans/${name}`)));
    });
  }
  if (!has(plan, 'delete')) {
    plan.command('delete <name>').description('delete a recovery plan').action(async (name: string, _o, cmd: Command) => {
      const { client, json } = globals(cmd);
      await client.request('DELETE', await client.in(`/recovery-plans/${name}`));
      done(json, { deleted: name }, `recovery plan ${name} deleted`);
    });
  }
}
