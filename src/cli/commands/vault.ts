import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { startVaultServer } from '../../api/server.js';
import { initVault } from '../../api/vault-init.js';
import { RefugeError } from '../../core/errors.js';
import { printJson, say } from '../output.js';
import { readPassword } from './access.js';

const DATA_DEFAULT = process.env.REFUGE_DATA ?? '/var/lib/refuge/vault';
const databaseOption = 'sqlite:PATH (default: vault.db in the data folder) or postgres://user@host:5432/db[?schema=name] (env REFUGE_DATABASE_URL)';

function parseListen(listen: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new RefugeError('invalid_argument', `--listen '${listen}' is not HOST:PORT`);
  return { host: m[1] as string, port: Number(m[2]) };
}

/** REFUGE_MONITOR_INTERVAL_SECONDS as milliseconds; 0 would turn the monitor off, so it is refused like any non-positive value. */
function monitorIntervalMs(text: string): number {
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new RefugeError('invalid_argument', `REFUGE_MONITOR_INTERVAL_SECONDS '${text}' is not a positive number of seconds`);
  return seconds * 1000;
}

/** `refuge vault` (serve, the default), `refuge vault init`, and the resource subcommands (configuration.ts). */
export function registerVaultCommand(program: Command): Command {
  const vault = program.command('vault').description('run the vault server, or manage vaults');
  vault
    .command('serve', { isDefault: true })
    .description('serve the vault API (HTTPS) and the in-process replicator')
    .option('--data <dir>', 'data folder (database, TLS material, site stores, recovered machines)', DATA_DEFAULT)
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:7443')
    .option('--database <url>', databaseOption)
    .option('--insecure-http', 'serve plain HTTP (only behind a TLS-terminating proxy)')
    .action(async (o: { data: string; listen: string; database?: string; insecureHttp?: boolean }) => {
      const { host, port } = parseListen(o.listen);
      const databaseUrl = o.database ?? process.env.REFUGE_DATABASE_URL;
      const held = process.env.REFUGE_TEST_HOLD_TASKS?.split(',').filter(Boolean) ?? [];
      const server = await startVaultServer({
        dataDir: resolve(o.data),
        host,
        port,
        ...(databaseUrl ? { databaseUrl } : {}),
        insecureHttp: o.insecureHttp === true,
        holdTasks: held,
        ...(process.env.REFUGE_JOB_LEASE_SECONDS ? { jobLeaseSeconds: Number(process.env.REFUGE_JOB_LEASE_SECONDS) } : {}),
        // How often health turns into alerts (default 30 s); tests of alerts shorten it so they need not wait.
        ...(process.env.REFUGE_MONITOR_INTERVAL_SECONDS ? { monitorIntervalMs: monitorIntervalMs(process.env.REFUGE_MONITOR_INTERVAL_SECONDS) } : {}),
      });
      process.stdout.write(`vault listening on ${server.url} (data in ${resolve(o.data)})\n`);
      await new Promise<void>((done) => {
        const stop = () => void server.close().then(done);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
  vault
    .command('init')
    .description('initialize a vault data folder: the vault CA and HTTPS certificate, the database, the first owner and a credentials file')
    .option('--data <dir>', 'data folder', DATA_DEFAULT)
    .option('--listen <host:port>', 'the address clients will use', '127.0.0.1:7443')
    .option('--database <url>', databaseOption)
    .option('--owner <name>', 'name of the first user (an owner)', 'admin')
    .option('--password-stdin', "read the owner's password from standard input (default: generate one and print it once)")
    .option('--hostname <name...>', 'extra DNS names or addresses for the server certificate')
    .option('--tls-cert <file>', 'use this server certificate (PEM) instead of one from a new vault CA')
    .option('--tls-key <file>', 'its private key (PEM)')
    .option('--tls-ca <file>', 'the CA (PEM) clients must trust for --tls-cert')
    .action(async (o: { data: string; listen: string; database?: string; owner: string; passwordStdin?: boolean; hostname?: string[]; tlsCert?: string; tlsKey?: string; tlsCa?: string }, cmd: Command) => {
      const json = cmd.optsWithGlobals<{ json?: boolean }>().json === true;
      if (o.tlsCert && !(o.tlsKey && o.tlsCa)) throw new RefugeError('invalid_argument', '--tls-cert needs --tls-key and --tls-ca');
      const password = o.passwordStdin ? await readPassword(true) : undefined;
      const databaseUrl = o.database ?? process.env.REFUGE_DATABASE_URL;
      const r = await initVault({
        dataDir: resolve(o.data),
        listen: o.listen,
        owner: o.owner,
        ...(password ? { password } : {}),
        ...(databaseUrl ? { databaseUrl } : {}),
        ...(o.hostname ? { hostnames: o.hostname } : {}),
        ...(o.tlsCert && o.tlsKey && o.tlsCa
          ? { certificate: { certPem: await readFile(o.tlsCert, 'utf8'), keyPem: await readFile(o.tlsKey, 'utf8'), caPem: await readFile(o.tlsCa, 'utf8') } }
          : {}),
      });
      if (json) return printJson({ credentialsPath: r.credentialsPath, owner: r.owner, caFingerprint256: r.caFingerprint256, ...(r.generatedPassword ? { password: r.generatedPassword } : {}) });
      say(`vault initialized in ${resolve(o.data)}`);
      say(`  CA fingerprint (SHA-256): ${r.caFingerprint256}`);
      say(`  owner: ${r.owner}${r.generatedPassword ? `, password: ${r.generatedPassword}  (shown once)` : ''}`);
      say(`  credentials (URL, CA, owner token): ${r.credentialsPath}`);
      say(`next: refuge vault --data ${resolve(o.data)} --listen ${o.listen}, then REFUGE_CREDENTIALS=${r.credentialsPath} refuge vault create NAME`);
    });
  return vault;
}
