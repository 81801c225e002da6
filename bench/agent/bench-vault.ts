import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initVault } from '../../src/api/vault-init.js';
import { requestJson, type HttpConnection } from '../../src/core/http-client.js';
import type { RegistrationCredentials, RegistrationKeyResponse } from '../../src/protocol/enrollment.js';
import { register, type Identity } from '../../src/protocol/identity.js';
import { FilesystemBackend } from '../../src/store/backends/filesystem.js';
import { ReplicaStore } from '../../src/store/replica-store.js';
import type { StoreFormat } from '../../src/store/store-config.js';
import { startUntil, stop } from './measure.js';

const root = join(import.meta.dirname, '..', '..');

/**
 * A real `refuge vault` process as the agent benchmarks need it: a data folder initialized the production way (its
 * own CA, HTTPS, an owner token), vault `bench` with sites `primary` and `recovery` and policy `p`. Agents register
 * the real way, with a one-time key redeemed for a client certificate (mutual TLS to vault and replicator).
 */
export async function startBenchVault(dataDir: string, o: { crashIntervalSeconds: number; chunkSizeKiB?: number; nodeArgs?: string[]; storeFormat?: StoreFormat }) {
  const init = await initVault({ dataDir });
  // A store of another format than the default is made before the vault opens it (as `refuge store init --format`).
  if (o.storeFormat) await ReplicaStore.open(await FilesystemBackend.create(join(dataDir, 'sites', 'recovery', 'store')), { create: true, format: o.storeFormat });
  const owner: HttpConnection = { token: init.credentials.token, ca: init.credentials.ca };
  const child = await startUntil(process.execPath, [...(o.nodeArgs ?? []), join(root, 'bin', 'refuge.js'), 'vault', '--data', dataDir, '--listen', '127.0.0.1:0'], /vault listening on (\S+)/);
  const url = (/vault listening on (\S+)/.exec(child.output()) as RegExpExecArray)[1] as string;
  const api = <T = unknown>(method: string, path: string, body?: unknown) => requestJson<T>(method, `${url}/api/v1${path}`, { connection: owner, ...(body === undefined ? {} : { body }) });
  try {
    await api('POST', '/vaults', { name: 'bench' });
    await api('POST', '/vaults/bench/sites', { name: 'primary' });
    await api('POST', '/vaults/bench/sites', { name: 'recovery' });
    await api('POST', '/vaults/bench/policies', { name: 'p', crashIntervalSeconds: o.crashIntervalSeconds, ...(o.chunkSizeKiB ? { chunkSizeKiB: o.chunkSizeKiB } : {}) });
  } catch (err) {
    await stop(child);
    throw err;
  }
  /** A registration file's content with a fresh one-time key (`refuge agent key create --write`). */
  const registration = async (): Promise<RegistrationCredentials> => {
    const k = await api<RegistrationKeyResponse>('POST', '/vaults/bench/agents/keys', {});
    return { url, vault: 'bench', caFingerprint256: k.caFingerprint256, registrationKey: k.key };
  };
  return {
    url,
    child,
    api,
    registration,
    /** Writes a registration file for an agent process (`refuge --credentials FILE agent ...`). */
    async writeRegistration(path: string): Promise<string> {
      await writeFile(path, JSON.stringify(await registration()), { mode: 0o600 });
      return path;
    },
    /** Registers machine `name` at site primary in `stateDir`: its client certificate, for an in-process agent. */
    async registerMachine(name: string, stateDir: string): Promise<Identity> {
      return register(await registration(), { kind: 'machine', site: 'primary', machine: name }, stateDir);
    },
    stop: () => stop(child),
  };
}
