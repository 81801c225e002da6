import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { parseDuration } from '../../core/durations.js';
import { assertValidName } from '../../core/names.js';
import type { RegistrationCredentials, RegistrationKeyResponse } from '../../protocol/enrollment.js';
import { loadIdentity, readRegistrationCredentials, register, type Identity } from '../../protocol/identity.js';
import { globals } from '../context.js';
import { printJson, say } from '../output.js';

/** The registration file named by --credentials / REFUGE_CREDENTIALS, for an agent or replicator not yet registered. */
export function registrationFile(cmd: Command): () => Promise<RegistrationCredentials> {
  const path = cmd.optsWithGlobals<{ credentials?: string }>().credentials ?? process.env.REFUGE_CREDENTIALS;
  return async () => {
    if (!path) {
      throw new RefugeError('failed_precondition', 'not registered yet, and no registration file given', {
        hint: 'pass --credentials FILE (from `refuge agent key create --write FILE`, run by an owner or contributor)',
      });
    }
    return readRegistrationCredentials(path);
  };
}

/**
 * The identity saved in `stateDir`, registering it first (with the registration file) when there is none: what
 * `refuge replicator` and `refuge agent register` do before anything else.
 */
export async function identityFor(cmd: Command, stateDir: string, who: { kind: 'machine' | 'replicator'; site: string; machine?: string; names?: string[] }, force = false): Promise<Identity> {
  const existing = force ? undefined : await loadIdentity(stateDir);
  if (existing) return existing;
  return register(await registrationFile(cmd)(), who, stateDir);
}

/** `refuge agent register` and `refuge agent key create`. */
export function registerAgentRegistrationCommands(agent: Command): void {
  agent
    .command('register')
    .description('register this machine with the vault: redeem a one-time key (--credentials FILE) for a client certificate kept in --state-dir')
    .action(async (_o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals<{ site?: string; name?: string; stateDir: string; json?: boolean }>();
      if (!o.site || !o.name) throw new RefugeError('invalid_argument', 'say which machine to register: --site SITE --name MACHINE');
      const stateDir = resolve(o.stateDir);
      const machine = assertValidName('machine', o.name);
      const id = await identityFor(cmd, stateDir, { kind: 'machine', site: assertValidName('site', o.site), machine }, true);
      if (o.json) return printJson({ vault: id.vault, url: id.url, machine, site: id.site, notAfter: id.notAfter, stateDir });
      say(`machine '${machine}' registered with vault '${id.vault}' at ${id.url}; its client certificate (valid until ${id.notAfter}) is in ${stateDir}/identity`);
      say(`start the agent with: refuge agent --site ${id.site} --name ${machine} --state-dir ${stateDir} --disk NAME=PATH ...`);
    });

  const key = agent.command('key').description('one-time registration keys for agents and standalone replicators');
  key
    .command('create')
    .description('create a one-time registration key (owner or contributor); with --write, the registration file an agent or replicator needs')
    .option('--expires-in <duration>', 'how long the key may be redeemed', '1h')
    .option('--write <file>', 'write the registration file (vault URL, CA fingerprint, key), mode 0600')
    .action(async (o: { expiresIn: string; write?: string }, cmd: Command) => {
      const { client, url, json } = globals(cmd);
      const minutes = Math.ceil(parseDuration(o.expiresIn) / 60);
      const vault = await client.vault();
      const r = await client.request<RegistrationKeyResponse>('POST', `/vaults/${encodeURIComponent(vault)}/agents/keys`, { expiresInMinutes: minutes });
      const file: RegistrationCredentials = { url, vault: r.vault, caFingerprint256: r.caFingerprint256, registrationKey: r.key, expiresAt: r.expiresAt };
      if (o.write) await writeFile(o.write, JSON.stringify(file, null, 2), { mode: 0o600 });
      if (json) return printJson(o.write ? { id: r.id, vault: r.vault, expiresAt: r.expiresAt, caFingerprint256: r.caFingerprint256, file: o.write } : file);
      if (o.write) say(`registration file ${o.write} written: key ${r.id} for vault '${r.vault}', single use, expires ${r.expiresAt}`);
      else say(`registration key (single use, expires ${r.expiresAt}): ${r.key}\nvault CA fingerprint: ${r.caFingerprint256}`);
      say(`on the machine: refuge --credentials FILE agent register --site SITE --name MACHINE --state-dir DIR   (host: ${hostname()})`);
    });
}
