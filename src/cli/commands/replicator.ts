import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { createLogger } from '../../core/log.js';
import { assertValidName } from '../../core/names.js';
import { startStandaloneReplicator } from '../../replicator/standalone.js';
import { globals } from '../context.js';

export function registerReplicatorCommand(program: Command): void {
  program
    .command('replicator')
    .description("run a standalone replicator for a site: receives agents' chunks, commits points to the site's store, reports to the vault")
    .requiredOption('--site <site>', 'the site whose replica store this replicator commits to')
    .option('--listen <host:port>', 'address agents connect to', '127.0.0.1:0')
    .option('--public-url <url>', "URL agents use to reach it, when not the listening address (ends in /replicator/v1)")
    .option('--store <path>', "the site's replica store as mounted on this host (default: the path the vault names)")
    .action(async (o: { site: string; listen: string; publicUrl?: string; store?: string }, cmd: Command) => {
      const { client, url } = globals(cmd);
      const m = /^(.*):(\d+)$/.exec(o.listen);
      if (!m) throw new RefugeError('invalid_argument', `--listen '${o.listen}' is not HOST:PORT`);
      const replicator = await startStandaloneReplicator({
        vaultUrl: url,
        vault: await client.vault(),
        site: assertValidName('site', o.site),
        host: m[1],
        port: Number(m[2]),
        ...(o.publicUrl ? { publicUrl: o.publicUrl } : {}),
        ...(o.store ? { storePath: resolve(o.store) } : {}),
        connection: client.connection,
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
