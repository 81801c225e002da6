import { resolve } from 'node:path';
import type { Command } from 'commander';
import { startVaultServer } from '../../api/server.js';
import { RefugeError } from '../../core/errors.js';

/** `refuge vault` (serve, the default) and its resource subcommands (registered in configuration.ts). */
export function registerVaultCommand(program: Command): Command {
  const vault = program.command('vault').description('run the vault server, or manage vaults');
  vault
    .command('serve', { isDefault: true })
    .description('serve the vault API and the in-process replicator')
    .option('--data <dir>', 'data folder (database, site stores, recovered machines)', process.env.REFUGE_DATA ?? '/var/lib/refuge/vault')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:7443')
    .option('--database <url>', 'sqlite:PATH (default: vault.db in the data folder) or postgres://user@host:5432/db[?schema=name] (env REFUGE_DATABASE_URL)')
    .action(async (o: { data: string; listen: string; database?: string }) => {
      const m = /^(.*):(\d+)$/.exec(o.listen);
      if (!m) throw new RefugeError('invalid_argument', `--listen '${o.listen}' is not HOST:PORT`);
      const databaseUrl = o.database ?? process.env.REFUGE_DATABASE_URL;
      const server = await startVaultServer({ dataDir: resolve(o.data), host: m[1], port: Number(m[2]), ...(databaseUrl ? { databaseUrl } : {}) });
      process.stdout.write(`vault listening on ${server.url} (data in ${resolve(o.data)})\n`);
      await new Promise<void>((done) => {
        const stop = () => void server.close().then(done);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
  return vault;
}
