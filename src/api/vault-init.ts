import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import { RefugeError } from '../core/errors.js';
import { openDatabase } from '../vault/db/connect.js';
import { certificateFacts, createCa, issueCertificate, type KeyPair } from '../vault/security/pki.js';
import { UserRepository } from '../vault/security/users.js';

/** Where a vault keeps its TLS material, under its data folder. Keys are readable by the vault's user only. */
export const tlsPaths = (dataDir: string) => ({
  dir: join(dataDir, 'tls'),
  caCert: join(dataDir, 'tls', 'ca.crt'),
  caKey: join(dataDir, 'tls', 'ca.key'),
  cert: join(dataDir, 'tls', 'server.crt'),
  key: join(dataDir, 'tls', 'server.key'),
  /** When the operator brought the server certificate (no vault CA key): the CA that issues agent certificates. */
  agentsCaCert: join(dataDir, 'tls', 'agents-ca.crt'),
  agentsCaKey: join(dataDir, 'tls', 'agents-ca.key'),
});

/**
 * What a client needs to reach a vault safely, written at init to `credentials/<user>.json` (mode 0600): the URL,
 * the vault CA to trust (and its fingerprint, to compare out of band), and a token. `refuge --credentials FILE`
 * (or REFUGE_CREDENTIALS) uses it.
 */
export interface CredentialsFile {
  url: string;
  ca: string;
  caFingerprint256: string;
  user?: string;
  token: string;
}

export interface InitOptions {
  dataDir: string;
  databaseUrl?: string;
  /** The first user, an owner. */
  owner?: string;
  /** Its password; generated (and returned once) when absent. */
  password?: string;
  /** The address clients will use (goes into the credentials file); default 127.0.0.1:7443. */
  listen?: string;
  /** Extra DNS names or addresses for the server certificate (localhost, 127.0.0.1, ::1 and this host are in it). */
  hostnames?: string[];
  /** Operator-provided server certificate and key instead of the vault CA's; `caPem` is what clients must trust. */
  certificate?: { certPem: string; keyPem: string; caPem: string; caKeyPem?: string };
}

export interface InitResult {
  credentialsPath: string;
  credentials: CredentialsFile;
  owner: string;
  /** Only when it was generated: shown once, never stored in clear. */
  generatedPassword: string | undefined;
  caFingerprint256: string;
}

export const vaultKeyPath = (dataDir: string) => join(dataDir, 'keys', 'vault.key');

export const defaultDatabaseUrl = (dataDir: string) => `sqlite:${join(dataDir, 'vault.db')}`;

/** `refuge vault init`: the vault CA and server certificate, the database, the first owner and a token for it. */
export async function initVault(o: InitOptions): Promise<InitResult> {
  const paths = tlsPaths(o.dataDir);
  if (existsSync(paths.cert)) {
    throw new RefugeError('already_exists', `the vault at ${o.dataDir} is already initialized`, { hint: 'start it with `refuge vault --data DIR`' });
  }
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  let caPem: string;
  if (o.certificate) {
    caPem = o.certificate.caPem;
    await writeKeyPair(paths.cert, paths.key, { certPem: o.certificate.certPem, keyPem: o.certificate.keyPem });
    // With the CA's key the vault issues agent certificates from it; without, from a CA of its own (see loadIssuingCa).
    if (o.certificate.caKeyPem) await writeKeyPair(paths.caCert, paths.caKey, { certPem: caPem, keyPem: o.certificate.caKeyPem });
  } else {
    const ca = createCa(`Refuge vault CA (${hostname()})`);
    const server = issueCertificate(ca, { commonName: hostname(), names: ['localhost', '127.0.0.1', '::1', hostname(), ...(o.hostnames ?? [])], usage: 'server' });
    await writeKeyPair(paths.caCert, paths.caKey, ca);
    await writeKeyPair(paths.cert, paths.key, server);
    caPem = ca.certPem;
  }
  await writeFileAtomic(paths.caCert, caPem);

  // The vault's encryption key (for recovery points encrypted at rest): 256 random bits, readable by the vault only.
  const keyPath = vaultKeyPath(o.dataDir);
  if (!existsSync(keyPath)) {
    await mkdir(join(o.dataDir, 'keys'), { recursive: true, mode: 0o700 });
    await writeFileAtomic(keyPath, randomBytes(32));
    await chmod(keyPath, 0o600);
  }

  const owner = o.owner ?? 'admin';
  const password = o.password ?? randomBytes(18).toString('base64url');
  const db = await openDatabase(o.databaseUrl ?? defaultDatabaseUrl(o.dataDir));
  let token: string;
  try {
    const users = new UserRepository(db);
    const user = (await users.count()) === 0 ? await users.create(owner, password, 'owner') : await users.get(owner);
    ({ token } = await users.issueToken({ user, name: 'init', kind: 'api' }));
  } finally {
    await db.destroy();
  }
  const caFingerprint256 = certificateFacts(caPem).fingerprint256;
  const credentials: CredentialsFile = { url: `https://${o.listen ?? '127.0.0.1:7443'}`, ca: caPem, caFingerprint256, user: owner, token };
  const credentialsPath = join(o.dataDir, 'credentials', `${owner}.json`);
  await mkdir(join(o.dataDir, 'credentials'), { recursive: true, mode: 0o700 });
  await writeFileAtomic(credentialsPath, JSON.stringify(credentials, null, 2));
  await chmod(credentialsPath, 0o600);
  return { credentialsPath, credentials, owner, generatedPassword: o.password ? undefined : password, caFingerprint256 };
}

async function writeKeyPair(certPath: string, keyPath: string, pair: KeyPair): Promise<void> {
  await writeFileAtomic(certPath, pair.certPem);
  await writeFileAtomic(keyPath, pair.keyPem);
  await chmod(keyPath, 0o600);
}

/**
 * The CA that issues client certificates to agents and standalone replicators: the vault CA when the vault has its
 * key, else a CA of the vault's own for agents (created on first start), for operators who brought their own
 * server certificate.
 */
export async function loadIssuingCa(dataDir: string): Promise<KeyPair> {
  const paths = tlsPaths(dataDir);
  if (existsSync(paths.caKey)) return { certPem: await readFile(paths.caCert, 'utf8'), keyPem: await readFile(paths.caKey, 'utf8') };
  if (!existsSync(paths.agentsCaKey)) {
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    await writeKeyPair(paths.agentsCaCert, paths.agentsCaKey, createCa(`Refuge agents CA (${hostname()})`));
  }
  return { certPem: await readFile(paths.agentsCaCert, 'utf8'), keyPem: await readFile(paths.agentsCaKey, 'utf8') };
}

/** The server's TLS material, or null with `insecureHttp`; a vault that was never initialized refuses to start. */
export async function loadServerTls(dataDir: string, insecureHttp: boolean): Promise<{ certPem: string; keyPem: string; caPem: string } | null> {
  if (insecureHttp) return null;
  const paths = tlsPaths(dataDir);
  if (!existsSync(paths.cert)) {
    throw new RefugeError('failed_precondition', `the vault at ${dataDir} has no TLS certificate: it was never initialized`, {
      hint: `run \`refuge vault init --data ${dataDir}\` first (or start with --insecure-http behind a TLS proxy)`,
    });
  }
  return { certPem: await readFile(paths.cert, 'utf8'), keyPem: await readFile(paths.key, 'utf8'), caPem: await readFile(paths.caCert, 'utf8') };
}
