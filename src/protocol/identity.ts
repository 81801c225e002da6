import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import type Forge from 'node-forge';
import { writeFileAtomic } from '../core/atomic-file.js';
import { RefugeError } from '../core/errors.js';
import { requestJson, type HttpConnection } from '../core/http-client.js';
import type { EnrollRequest, EnrollResponse, RegistrationCredentials } from './enrollment.js';

/**
 * The client side of registration and mutual TLS, shared by agents and standalone replicators: check the vault's
 * chain against the CA fingerprint of the registration credentials, generate a key and a certificate request,
 * redeem the one-time key for a certificate, keep the identity in the state folder (the key readable by its owner
 * only), and renew the certificate before it expires.
 */
export interface Identity {
  url: string;
  vault: string;
  kind: 'machine' | 'replicator';
  /** The machine's name, or the site a replicator serves. */
  name: string;
  site: string;
  notBefore: string;
  notAfter: string;
  /** Trust (the vault CA and the CA that issues agent and replicator certificates) and the client certificate. */
  connection: Required<Pick<HttpConnection, 'ca' | 'cert' | 'key'>>;
  /** The CA that issues agent and replicator certificates: what a replicator trusts for its clients. */
  issuingCa: string;
}

type IdentityMeta = Omit<Identity, 'connection' | 'notBefore' | 'notAfter' | 'issuingCa'>;

const dirOf = (stateDir: string) => join(stateDir, 'identity');

/**
 * node-forge, loaded on first use: an agent needs it only to register and to renew its certificate (every few
 * months), and once loaded it holds ~12 MiB of the agent's memory (P11 in docs/benchmarks.md).
 */
const forgeModule = (): typeof Forge => createRequire(import.meta.url)('node-forge') as typeof Forge;

/** A new RSA key (Node's OpenSSL) and a PKCS#10 request for it, signed by it (node-forge builds the request). */
export function keyAndCsr(commonName: string): { keyPem: string; csrPem: string } {
  const forge = forgeModule();
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem);
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'commonName', value: commonName }]);
  csr.sign(key, forge.md.sha256.create());
  return { keyPem, csrPem: forge.pki.certificationRequestToPem(csr) };
}

const describe = (o: object | undefined) => Object.entries(o ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(', ');

/**
 * The vault CA, taken from the chain the vault presents when (and only when) one of its certificates has the
 * fingerprint the registration credentials carry, and the server certificate verifies against it. Otherwise the
 * agent does not trust the vault: the error names the issuer it saw and what to do.
 */
export async function trustedVaultCa(url: string, caFingerprint256: string, timeoutMs = 10_000): Promise<string> {
  const u = new URL(url);
  if (u.protocol !== 'https:') throw new RefugeError('invalid_argument', `the vault URL ${url} is not https: registration needs the vault's TLS chain`);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port || 443);
  const servername = isIP(host) ? undefined : host;
  const chain = await new Promise<tls.DetailedPeerCertificate[]>((resolve, reject) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, ...(servername ? { servername } : {}) });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)));
    s.once('error', (err: Error) => reject(new RefugeError('unavailable', `cannot reach the vault at ${url}: ${err.message}`, { cause: err, retryable: true })));
    s.once('secureConnect', () => {
      const certs: tls.DetailedPeerCertificate[] = [];
      for (let c = s.getPeerCertificate(true); c && c.raw && !certs.some((x) => x.fingerprint256 === c.fingerprint256); c = c.issuerCertificate) certs.push(c);
      s.destroy();
      resolve(certs);
    });
  });
  const wanted = caFingerprint256.toUpperCase();
  const ca = chain.find((c) => c.fingerprint256 === wanted);
  const leaf = chain[0];
  const issuer = describe(leaf?.issuer);
  const untrusted = (why: string) =>
    new RefugeError('failed_precondition', `the agent does not trust the vault's certificate chain: the vault at ${url} presents a certificate issued by '${issuer}', ${why}`, {
      details: { tls: 'untrusted', issuer, expectedCaFingerprint256: wanted },
      hint:
        "the agent must trust the vault's root CA (the trusted-root-certificate prerequisite): use a registration file made by this vault " +
        "(`refuge agent key create --write FILE`, which carries its CA fingerprint), and if the vault's certificate comes from your own PKI, " +
        'make its server send the full chain up to the root CA whose fingerprint the file names',
    });
  if (!ca) throw untrusted(`and no certificate in its chain has the CA fingerprint ${wanted} of the registration file`);
  const caPem = new X509Certificate(ca.raw).toString();
  // The chain holds the CA; now verify the server's certificate against it, as every later connection will.
  await new Promise<void>((resolve, reject) => {
    const s = tls.connect({ host, port, ca: caPem, ...(servername ? { servername } : {}) });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)));
    s.once('error', (err: Error & { code?: string }) => reject(untrusted(`which does not verify against the CA of the registration file (${err.code ?? err.message})`)));
    s.once('secureConnect', () => {
      s.destroy();
      resolve();
    });
  });
  return caPem;
}

/** Reads a registration credentials file, saying what is missing. */
export async function readRegistrationCredentials(path: string): Promise<RegistrationCredentials> {
  let c: Partial<RegistrationCredentials>;
  try {
    c = JSON.parse(await readFile(path, 'utf8')) as Partial<RegistrationCredentials>;
  } catch (err) {
    throw RefugeError.wrap(err, `cannot read the registration file ${path}`, 'invalid_argument');
  }
  for (const field of ['url', 'vault', 'caFingerprint256', 'registrationKey'] as const) {
    if (typeof c[field] !== 'string' || c[field] === '') {
      throw new RefugeError('invalid_argument', `the registration file ${path} has no ${field}`, { hint: 'write one with `refuge agent key create --write FILE` (as an owner or contributor)' });
    }
  }
  return c as RegistrationCredentials;
}

/** Redeems the one-time key for a certificate and saves the identity in `stateDir` (replacing any earlier one). */
export async function register(creds: RegistrationCredentials, who: { kind: 'machine' | 'replicator'; site: string; machine?: string; names?: string[] }, stateDir: string): Promise<Identity> {
  const vaultCa = await trustedVaultCa(creds.url, creds.caFingerprint256);
  const name = who.kind === 'machine' ? (who.machine ?? '') : who.site;
  const { keyPem, csrPem } = keyAndCsr(`${who.kind}:${name}`);
  const body: EnrollRequest = { key: creds.registrationKey, kind: who.kind, site: who.site, csr: csrPem, ...(who.machine ? { machine: who.machine } : {}), ...(who.names ? { names: who.names } : {}) };
  const r = await requestJson<EnrollResponse>('POST', `${creds.url.replace(/\/$/, '')}/api/v1/vaults/${encodeURIComponent(creds.vault)}/agents/enroll`, { body, connection: { ca: vaultCa } });
  const meta: IdentityMeta = { url: creds.url, vault: r.vault, kind: who.kind, name, site: who.site };
  return save(stateDir, meta, { ca: `${vaultCa.trim()}\n${r.issuingCa.trim()}\n`, cert: r.certificate, key: keyPem }, r.issuingCa);
}

async function save(stateDir: string, meta: IdentityMeta, connection: Identity['connection'], issuingCa: string): Promise<Identity> {
  const dir = dirOf(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, 'client.key'), connection.key);
  await chmod(join(dir, 'client.key'), 0o600);
  await writeFileAtomic(join(dir, 'client.crt'), connection.cert);
  await writeFileAtomic(join(dir, 'trust.pem'), connection.ca);
  await writeFileAtomic(join(dir, 'issuing-ca.pem'), issuingCa);
  await writeFileAtomic(join(dir, 'identity.json'), JSON.stringify(meta, null, 2));
  return withValidity(meta, connection, issuingCa);
}

function withValidity(meta: IdentityMeta, connection: Identity['connection'], issuingCa: string): Identity {
  const x = new X509Certificate(connection.cert);
  return { ...meta, notBefore: new Date(x.validFrom).toISOString(), notAfter: new Date(x.validTo).toISOString(), connection, issuingCa };
}

/**
 * The identity saved in `stateDir`, or undefined if the agent never registered. An expired certificate is refused
 * here, with what to do, rather than by every request.
 */
export async function loadIdentity(stateDir: string, now = new Date()): Promise<Identity | undefined> {
  const dir = dirOf(stateDir);
  const text = await readFile(join(dir, 'identity.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const meta = JSON.parse(text) as IdentityMeta;
  const [cert, key, ca, issuingCa] = await Promise.all(['client.crt', 'client.key', 'trust.pem', 'issuing-ca.pem'].map((f) => readFile(join(dir, f), 'utf8')));
  const identity = withValidity(meta, { cert: cert as string, key: key as string, ca: ca as string }, issuingCa as string);
  if (Date.parse(identity.notAfter) <= now.getTime()) {
    throw new RefugeError('unauthenticated', `the ${meta.kind} certificate in ${dir} expired at ${identity.notAfter}; the vault refuses it`, {
      hint: `register again with a new key: \`refuge agent key create --write FILE\`, then \`refuge --credentials FILE ${meta.kind === 'machine' ? 'agent register' : 'replicator'} ...\``,
      details: { certificate: 'expired' },
    });
  }
  return identity;
}

/** Whether a certificate is past two thirds of its lifetime: time to renew, with a third left for retries. */
export function renewalDue(identity: Identity, now = new Date()): boolean {
  const from = Date.parse(identity.notBefore);
  const to = Date.parse(identity.notAfter);
  return now.getTime() >= from + ((to - from) * 2) / 3;
}

/** A new key and certificate for the same identity, authenticated by the current certificate; saved in `stateDir`. */
export async function renew(identity: Identity, stateDir: string): Promise<Identity> {
  const { keyPem, csrPem } = keyAndCsr(`${identity.kind}:${identity.name}`);
  const r = await requestJson<EnrollResponse>('POST', `${identity.url.replace(/\/$/, '')}/api/v1/vaults/${encodeURIComponent(identity.vault)}/agents/renew`, {
    body: { csr: csrPem },
    connection: identity.connection,
  });
  const { connection, notBefore: _b, notAfter: _a, issuingCa, ...meta } = identity;
  return save(stateDir, meta, { ca: connection.ca, cert: r.certificate, key: keyPem }, issuingCa);
}
