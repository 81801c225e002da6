import { writeFile } from 'node:fs/promises';
import type { RegistrationCredentials, RegistrationKeyResponse } from '../../src/protocol/enrollment.js';

/**
 * Writes a registration file (vault URL, CA fingerprint, one-time key), as `refuge agent key create --write` does:
 * an agent or replicator started with `--credentials` on it registers itself on its first run and keeps its
 * client certificate in its state folder. One file per process: each key works once.
 */
export async function writeRegistration(
  api: <T>(method: string, path: string, body?: unknown) => Promise<T>,
  url: string,
  path: string,
  vault = 'demo',
): Promise<string> {
  const k = await api<RegistrationKeyResponse>('POST', `/vaults/${vault}/agents/keys`, {});
  const file: RegistrationCredentials = { url, vault, caFingerprint256: k.caFingerprint256, registrationKey: k.key };
  await writeFile(path, JSON.stringify(file), { mode: 0o600 });
  return path;
}
