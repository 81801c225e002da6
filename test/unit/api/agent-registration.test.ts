import { X509Certificate } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import { ScanCapture } from '../../../src/agent/capture/scan-capture.js';
import { defaultDatabaseUrl } from '../../../src/api/vault-init.js';
import { isRefugeError } from '../../../src/core/errors.js';
import { requestRaw, type HttpConnection } from '../../../src/core/http-client.js';
import { silentLogger } from '../../../src/core/log.js';
import type { RegistrationCredentials } from '../../../src/protocol/enrollment.js';
import { keyAndCsr, loadIdentity, readRegistrationCredentials, register, renew, renewalDue, type Identity } from '../../../src/protocol/identity.js';
import { startStandaloneReplicator, type StandaloneReplicator } from '../../../src/replicator/standalone.js';
import { openDatabase } from '../../../src/vault/db/connect.js';
import { AgentIdentityRepository } from '../../../src/vault/security/agent-identities.js';
import { createCa, issueCertificate, signCsr } from '../../../src/vault/security/pki.js';
import { MiB, startAgentFixture, waitFor, type AgentFixture } from '../../helpers/agent/agent-fixture.js';
import { testCertificate } from '../../helpers/test-vault.js';

/** What a rejected promise threw, for asserting on codes, messages and hints. */
async function failure(p: Promise<unknown>): Promise<{ code: string; message: string; hint: string; status: number }> {
  try {
    await p;
  } catch (err) {
    if (!isRefugeError(err)) throw err;
    return { code: err.code, message: err.message, hint: err.hint ?? '', status: Number(err.details.status ?? 0) };
  }
  throw new Error('expected a failure');
}

/** The message of an error answer. */
const errorOf = (r: { text: string }) => (JSON.parse(r.text) as { error: { message: string } }).error.message;

const machineFacts = (name: string) => ({ name, hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: MiB }], boot: { kind: 'disk' } });

/**
 * Registration (issue 4, must show 3): an agent redeems a one-time key from a registration file for a client
 * certificate, after checking the vault's chain against the file's CA fingerprint; from then on it uses mutual TLS.
 * Refusals say why: an untrusted vault CA, a wrong, reused or expired key, an expired or foreign certificate, a
 * removed machine. The vault's agent routes and a standalone replicator both refuse clients without a good certificate.
 */
describe('agent registration and mutual TLS', () => {
  let f: AgentFixture;
  let vm: Identity;
  let standalone: StandaloneReplicator;
  let replicationId: string;
  const foreignCa = createCa('Mallory CA');
  const mallory = issueCertificate(foreignCa, { commonName: 'machine:vm1', usage: 'client' });
  let foreign: HttpConnection;
  const url = (path: string) => `${f.server.url}/api/v1/vaults/demo${path}`;

  beforeAll(async () => {
    f = await startAgentFixture('rreg-');
    // A client certificate from another CA, by a client that trusts the vault.
    foreign = { cert: mallory.certPem, key: mallory.keyPem, ca: testCertificate().caPem };
    const file = join(f.dir, 'registration.json');
    await writeFile(file, JSON.stringify(await f.registrationFile()), { mode: 0o600 });
    vm = await register(await readRegistrationCredentials(file), { kind: 'machine', site: 'primary', machine: 'vm5' }, join(f.dir, 'vm5'));
    const r = await requestRaw('POST', url('/agents/register'), { body: { site: 'primary', agentVersion: 't', machine: machineFacts('vm5') }, connection: vm.connection });
    expect(r.status).toBe(200);
    replicationId = (await f.api<{ id: string }>('POST', '/vaults/demo/replications', { machine: 'vm5', policy: 'default', targetSite: 'recovery' })).id;
    const rid = await f.registerReplicator('recovery');
    standalone = await startStandaloneReplicator({ vaultUrl: f.server.url, vault: 'demo', site: 'recovery', tls: { connection: rid.connection, issuingCa: rid.issuingCa }, log: silentLogger });
  }, 60_000); // RSA key generation on a busy 2-core machine
  afterAll(async () => {
    await standalone?.close();
    await f?.close();
  });

  it('registers with the credentials file: the key stays on the host, the certificate names the machine, heartbeats carry host facts', async () => {
    const dir = join(f.dir, 'vm5', 'identity');
    expect((await stat(join(dir, 'client.key'))).mode & 0o777).toBe(0o600);
    const cert = new X509Certificate(await readFile(join(dir, 'client.crt'), 'utf8'));
    expect(cert.subject).toContain('CN=machine:vm5');
    expect(cert.checkIssued(new X509Certificate(testCertificate().caPem))).toBe(true);
    expect(Date.parse(vm.notAfter) - Date.now()).toBeGreaterThan(29 * 86400_000);
    expect(await loadIdentity(join(f.dir, 'vm5'))).toMatchObject({ kind: 'machine', name: 'vm5', site: 'primary', vault: 'demo' });

    // A real agent, registering itself from a registration file on its first run, then heartbeating with host facts.
    const image = join(f.dir, 'vm7.raw');
    await writeFile(image, Buffer.alloc(MiB));
    const creds = await f.registrationFile();
    const agent = new Agent({
      vaultUrl: f.server.url, vault: 'demo', site: 'primary', machine: machineFacts('vm7') as ConstructorParameters<typeof Agent>[0]['machine'],
      capture: new ScanCapture({ disks: [{ name: 'disk0', path: image }] }), stateDir: join(f.dir, 'vm7'), heartbeatSeconds: 0.2, log: silentLogger,
      registration: async () => creds,
    });
    const stop = new AbortController();
    const done = agent.run(stop.signal);
    type MachineView = { agent: { host: { os: string; kernel: string; cpus: number; memoryBytes: number; agentVersion: string; disks: unknown[] } | null } };
    await waitFor(async () => (await f.api<{ items: { name: string }[] }>('GET', '/vaults/demo/machines')).items.some((m) => m.name === 'vm7'));
    await waitFor(async () => (await f.api<MachineView>('GET', '/vaults/demo/machines/vm7')).agent.host !== null);
    stop.abort();
    await done;
    const host = (await f.api<MachineView>('GET', '/vaults/demo/machines/vm7')).agent.host;
    expect(host).toMatchObject({ kernel: release(), disks: [{ name: 'disk0', sizeBytes: MiB }] });
    expect(host?.cpus).toBeGreaterThan(0);
    expect(host?.memoryBytes).toBeGreaterThan(0);
    // The support-matrix readiness check reads them.
    type Report = { results: { check: string; measured: { agents: Record<string, { host?: { kernel: string; arch: string } }> } }[] };
    const report = await f.api<Report>('POST', '/vaults/demo/readiness', { machine: 'vm7', targetSite: 'recovery' });
    const matrix = report.results.find((c) => c.check === 'support-matrix');
    expect(matrix?.measured.agents.vm7?.host).toEqual({ kernel: release(), arch: process.arch, os: host?.os });
    // The key was used once: a second registration with the same file is refused.
    const again = await failure(register(creds, { kind: 'machine', site: 'primary', machine: 'vm8' }, join(f.dir, 'vm8')));
    expect(again).toMatchObject({ code: 'unauthenticated', status: 401 });
    expect(again.message).toContain('already used');
    expect(again.message).toContain('machine:vm7');
    // Registrations are audited, without the key.
    const audit = await f.api<{ items: { action: string; status: number; details: { body: Record<string, unknown> } }[] }>('GET', '/audit?limit=200');
    const enrolls = audit.items.filter((e) => e.action === 'POST /api/v1/vaults/:vault/agents/enroll');
    expect(enrolls.map((e) => e.status)).toEqual(expect.arrayContaining([201, 401]));
    expect(enrolls.every((e) => e.details.body.key === '[redacted]')).toBe(true);
    expect(JSON.stringify(audit.items)).not.toContain(creds.registrationKey);
  });

  it('refuses to register when the agent does not trust the vault chain, naming the issuer and the fix', async () => {
    const creds: RegistrationCredentials = { ...(await f.registrationFile()), caFingerprint256: new X509Certificate(foreignCa.certPem).fingerprint256 };
    const e = await failure(register(creds, { kind: 'machine', site: 'primary', machine: 'vm9' }, join(f.dir, 'vm9')));
    expect(e.code).toBe('failed_precondition');
    expect(e.message).toContain("does not trust the vault's certificate chain");
    expect(e.message).toContain("issued by 'CN=Refuge test CA");
    expect(e.hint).toContain("trust the vault's root CA");
    expect(e.hint).toContain('refuge agent key create');
    // Nothing was redeemed: the key still registers an agent that trusts the right CA.
    await register({ ...creds, caFingerprint256: new X509Certificate(testCertificate().caPem).fingerprint256 }, { kind: 'machine', site: 'primary', machine: 'vm9' }, join(f.dir, 'vm9'));
  });

  it('refuses a wrong key, a reused key and an expired key, saying which', async () => {
    const good = await f.registrationFile();
    const who = { kind: 'machine' as const, site: 'primary', machine: 'vm10' };
    const wrong = await failure(register({ ...good, registrationKey: `rrk_${'x'.repeat(43)}` }, who, join(f.dir, 'vm10')));
    expect(wrong).toMatchObject({ code: 'unauthenticated', status: 401 });
    expect(wrong.message).toContain('not a key of this vault');
    expect(wrong.hint).toContain('refuge agent key create');
    await register(good, who, join(f.dir, 'vm10'));
    const reused = await failure(register(good, who, join(f.dir, 'vm10b')));
    expect(reused.message).toMatch(/already used \(at .*, by machine:vm10\)/);

    const db = await openDatabase(defaultDatabaseUrl(join(f.dir, 'vault')));
    try {
      const vault = await f.api<{ id: string }>('GET', '/vaults/demo');
      const expired = await new AgentIdentityRepository(db).createKey(vault.id, 'test', -1);
      const e = await failure(register({ ...good, registrationKey: expired.key }, who, join(f.dir, 'vm10c')));
      expect(e).toMatchObject({ code: 'unauthenticated', status: 401 });
      expect(e.message).toContain(`expired at ${expired.expiresAt}`);
    } finally {
      await db.destroy();
    }
  });

  it('refuses an expired certificate, at the vault and in the agent, with what to do', async () => {
    const ca = { certPem: testCertificate().caPem, keyPem: testCertificate().caKeyPem };
    const { keyPem, csrPem } = keyAndCsr('machine:vm5');
    const cert = signCsr(ca, csrPem, { commonName: 'machine:vm5', usage: 'client', days: 1, notBefore: new Date(Date.now() - 3 * 86400_000) });
    const expired = { ca: vm.connection.ca, cert, key: keyPem };
    const r = await requestRaw('POST', url('/agents/vm5/heartbeat'), { body: { agentVersion: 't' }, connection: expired });
    expect(r.status).toBe(401);
    expect(errorOf(r)).toMatch(/client certificate 'machine:vm5' expired at/);
    const s = await requestRaw('POST', `${standalone.url}/replications/${replicationId}/chunks/missing`, { body: { hashes: [] }, connection: expired });
    expect(s.status).toBe(401);
    expect(errorOf(s)).toContain('expired at');

    await writeFile(join(f.dir, 'vm5', 'identity', 'client.crt'), cert);
    const e = await failure(loadIdentity(join(f.dir, 'vm5')));
    expect(e.message).toMatch(/machine certificate in .* expired at/);
    expect(e.hint).toContain('register again');
    await writeFile(join(f.dir, 'vm5', 'identity', 'client.crt'), vm.connection.cert);
  });

  it('renews a certificate with the current one; the old one is revoked', async () => {
    const id = await f.registerMachine('vm11');
    const now = Date.parse(id.notBefore);
    const life = Date.parse(id.notAfter) - now;
    expect(renewalDue(id, new Date(now + life / 2))).toBe(false);
    expect(renewalDue(id, new Date(now + (life * 3) / 4))).toBe(true);
    const renewed = await renew(id, join(f.dir, 'vm11-state'));
    expect(renewed.connection.cert).not.toBe(id.connection.cert);
    expect(renewed.connection.key).not.toBe(id.connection.key);
    const body = { site: 'primary', agentVersion: 't', machine: machineFacts('vm11') };
    expect((await requestRaw('POST', url('/agents/register'), { body, connection: renewed.connection })).status).toBe(200);
    const old = await requestRaw('POST', url('/agents/register'), { body, connection: id.connection });
    expect(old.status).toBe(401);
    expect(errorOf(old)).toContain('is revoked');
  });

  it('a standalone replicator renews its certificate: it serves and reports with the new one', async () => {
    const first = await f.registerReplicator('primary');
    const stateDir = join(f.dir, 'replicator-renewing');
    let renewed: Identity | undefined;
    const r = await startStandaloneReplicator({
      vaultUrl: f.server.url, vault: 'demo', site: 'primary', tls: { connection: first.connection, issuingCa: first.issuingCa }, log: silentLogger,
      renewal: { due: () => renewed === undefined, renew: async () => (renewed = await renew(first, stateDir)) },
    });
    try {
      expect(renewed).toBeDefined();
      const served = await new Promise<string>((resolve, reject) => {
        const u = new URL(r.url);
        const s = tlsConnect({ host: u.hostname, port: Number(u.port), ca: first.connection.ca }, () => {
          resolve(s.getPeerCertificate().fingerprint256);
          s.destroy();
        });
        s.once('error', reject);
      });
      expect(served).toBe(new X509Certificate(renewed?.connection.cert as string).fingerprint256);
      await r.report(); // with the new client certificate; the old one is revoked
      const old = await requestRaw('PUT', url('/replicators/primary'), { body: { url: r.url, version: 't', replications: [] }, connection: first.connection });
      expect(old.status).toBe(401);
    } finally {
      await r.close();
    }
  });

  it('enforces mutual TLS on the vault agent routes: no certificate, another CA, another machine, a removed machine', async () => {
    const body = { agentVersion: 't' };
    const none = await requestRaw('POST', url('/agents/vm5/heartbeat'), { body, connection: { ca: vm.connection.ca } });
    expect(none.status).toBe(401);
    expect(errorOf(none)).toContain('needs a client certificate issued by this vault');
    const other = await requestRaw('POST', url('/agents/vm5/heartbeat'), { body, connection: foreign });
    expect(other.status).toBe(401);
    expect(errorOf(other)).toContain("not issued by this vault's CA (issuer 'CN=Mallory CA");
    const ok = await requestRaw('POST', url('/agents/vm5/heartbeat'), { body, connection: vm.connection });
    expect(ok.status).toBe(200);
    const vm1 = await requestRaw('POST', url('/agents/vm1/heartbeat'), { body, connection: vm.connection });
    expect(vm1.status).toBe(403);
    expect(errorOf(vm1)).toContain("may not act for machine 'vm1'");
    const asOther = await requestRaw('POST', url('/agents/register'), { body: { site: 'primary', agentVersion: 't', machine: machineFacts('vm1') }, connection: vm.connection });
    expect(asOther.status).toBe(403);

    // Removing a machine revokes its agent's certificate.
    const gone = await f.registerMachine('vm12');
    expect((await requestRaw('POST', url('/agents/register'), { body: { site: 'primary', agentVersion: 't', machine: machineFacts('vm12') }, connection: gone.connection })).status).toBe(200);
    await f.api('DELETE', '/vaults/demo/machines/vm12');
    const revoked = await requestRaw('POST', url('/agents/vm12/heartbeat'), { body, connection: gone.connection });
    expect(revoked.status).toBe(401);
    expect(errorOf(revoked)).toContain('is revoked');
  });

  it('enforces mutual TLS on the standalone replicator: HTTPS from the vault CA, and only the replication\'s own agent', async () => {
    const missing = (connection: HttpConnection) => requestRaw('POST', `${standalone.url}/replications/${replicationId}/chunks/missing`, { body: { hashes: [] }, connection });
    expect(standalone.url).toMatch(/^https:/);
    const none = await missing({ ca: vm.connection.ca });
    expect(none.status).toBe(401);
    expect(errorOf(none)).toContain('needs a client certificate');
    const other = await missing(foreign);
    expect(other.status).toBe(401);
    expect(errorOf(other)).toContain("not issued by this vault's CA");
    const vm1 = await missing(await f.agentConnection());
    expect(vm1.status).toBe(403);
    expect(errorOf(vm1)).toContain("is not the agent of this replication's machine");
    const own = await missing(vm.connection);
    expect(own.status).toBe(200);
    expect(JSON.parse(own.text)).toEqual({ missing: [] });
    // A client that does not trust the vault CA cannot even talk to the replicator.
    const untrusted = await failure(requestRaw('GET', `${standalone.url}/health`, { connection: { ca: foreignCa.certPem } }));
    expect(untrusted.message).toContain('is not trusted here');
  });
});
