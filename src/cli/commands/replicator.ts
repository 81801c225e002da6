import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { assertValidName } from '../../core/names.js';
import { startStandaloneReplicator } from '../../replicator/standalone.js';
import { identityFor } from './agent-registration.js';
import { renew, renewalDue } from '../../protocol/identity.js';

export function registerReplicatorCommand(program: Command): void {
  program
    .command('replicator')
    .description("run a standalone replicator for a site: receives agents' chunks, commits points to the site's store, reports to the vault")
    .requiredOption('--site <site>', 'the site whose replica store this replicator commits to')
    .option('--listen <host:port>', 'address agents connect to', '127.0.0.1:0')
    .option('--public-url <url>', "URL agents use to reach it, when not the listening address (ends in /replicator/v1)")
    .option('--store <path>', "the site's replica store as mounted on this host (default: the path the vault names)")
    .option('--state-dir <dir>', 'where the replicator keeps its identity (client and server certificate)', '/var/lib/refuge/replicator')
    .action(async (o: { site: string; listen: string; publicUrl?: string; store?: string; stateDir: string }, cmd: Command) => {
      const m = /^(.*):(\d+)$/.exec(o.listen);
      if (!m) throw new RefugeError('invalid_argument', `--listen '${o.listen}' is not HOST:PORT`);
      const site = assertValidName('site', o.site);
      // Its certificate serves HTTPS to agents under every name they may use, and authenticates it to the vault.
      const listenHost = (m[1] as string).replace(/^\[|\]$/g, '');
      const names = [...new Set(['localhost', '127.0.0.1', '::1', hostname(), ...(['0.0.0.0', '::', ''].includes(listenHost) ? [] : [listenHost]), ...(o.publicUrl ? [new URL(o.publicUrl).hostname.replace(/^\[|\]$/g, '')] : [])])];
      const identity = await identityFor(cmd, resolve(o.stateDir), { kind: 'replicator', site, names });
      if (identity.kind !== 'replicator' || identity.site !== site) {
        throw new RefugeError('invalid_argument', `${resolve(o.stateDir)} holds the identity of ${identity.kind} '${identity.name}', not of the replicator of site '${site}'`, { hint: 'use another --state-dir' });
      }
      let current = identity;
      const replicator = await startStandaloneReplicator({
        vaultUrl: identity.url,
        vault: identity.vault,
        site,
        host: m[1],
        port: Number(m[2]),
        ...(o.publicUrl ? { publicUrl: o.publicUrl } : {}),
        ...(o.store ? { storePath: resolve(o.store) } : {}),
        tls: { connection: identity.connection, issuingCa: identity.issuingCa },
        renewal: {
          due: () => renewalDue(current),
          renew: async () => (current = await renew(current, resolve(o.stateDir))),
        },
        log: createLogger('replicator'),
      });
      process.stdout.write(`replicator listening on ${replicator.url} for site ${o.site}\n`);
      await new Promise<void>((done) => {
        const stop = () => void replicator.close().then(done);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
