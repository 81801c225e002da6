import { join } from 'node:path';
import { initVault } from '../../src/api/vault-init.js';
import { requestJson, type HttpConnection } from '../../src/core/http-client.js';
import { packageRoot } from '../../src/core/package-root.js';
import { createCa, issueCertificate } from '../../src/vault/security/pki.js';
import { waitFor } from './agent/agent-fixture.js';
import type { TwoSites } from './netns.js';

export type Api = <T = Record<string, unknown>>(method: string, path: string, body?: unknown) => Promise<T>;

/**
 * The vault of a two-site test, as an operator would run it at the recovery site: a `refuge vault` process in the
 * `recovery` namespace (its data in `dir/vault`, a certificate for its service address there), holding vault
 * `demo` with sites `primary` and `recovery`, located at `recovery`, and policy `default` with `policy`'s settings.
 */
export async function startRecoveryVault(sites: TwoSites, dir: string, o: { policy: Record<string, unknown>; env?: Record<string, string> }): Promise<{ url: string; api: Api }> {
  const ca = createCa('Refuge two-site test CA');
  const server = issueCertificate(ca, { commonName: sites.recoveryService, names: ['localhost', '127.0.0.1', sites.recoveryService], usage: 'server' });
  const init = await initVault({ dataDir: join(dir, 'vault'), owner: 'owner', password: 'owner-password-1', certificate: { ...server, caPem: ca.certPem } });
  const bin = join(packageRoot(), 'bin', 'refuge.js');
  const vault = sites.spawnIn(sites.recovery, process.execPath, [bin, 'vault', '--data', join(dir, 'vault'), '--listen', `${sites.recoveryService}:0`], join(dir, 'vault.log'), { REFUGE_LOG_LEVEL: 'info', ...o.env });
  await waitFor(() => /vault listening on (\S+)/.test(vault.output()), 60_000, 'the vault listening at recovery');
  const url = (/vault listening on (\S+)/.exec(vault.output()) as RegExpExecArray)[1] as string;
  const owner: HttpConnection = { token: init.credentials.token, ca: init.credentials.ca };
  const api: Api = (method, path, body) => requestJson(method, `${url}/api/v1${path}`, { connection: owner, ...(body === undefined ? {} : { body }) });
  await api('POST', '/vaults', { name: 'demo' });
  await api('POST', '/vaults/demo/sites', { name: 'primary' });
  await api('POST', '/vaults/demo/sites', { name: 'recovery' });
  await api('PATCH', '/vaults/demo', { location: 'recovery' });
  await api('POST', '/vaults/demo/policies', { name: 'default', ...o.policy });
  return { url, api };
}
