import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allows, type Permission } from '../../../src/vault/security/roles.js';
import { join } from 'node:path';
import { requestRaw, type HttpConnection } from '../../../src/core/http-client.js';
import type { RegistrationCredentials, RegistrationKeyResponse } from '../../../src/protocol/enrollment.js';
import { keyAndCsr, register } from '../../../src/protocol/identity.js';
import { createCa, issueCertificate, signCsr } from '../../../src/vault/security/pki.js';
import { createTestVault, protectWithPoint, seedConfiguration, testCertificate, type TestVault } from '../../helpers/test-vault.js';

// Registration is public: the one-time key in its body is the credential (test/unit/api/agent-registration.test.ts).
// The web portal's page and assets are public too: they hold no data, every call they make carries a token.
const PUBLIC = ['GET /', 'GET /api/v1/health', 'GET /assets/:file', 'POST /api/v1/auth/login', 'POST /api/v1/vaults/:vault/agents/enroll'];
const SAMPLE: Record<string, string> = {
  vault: 'demo',
  site: 'primary',
  machine: 'vm1',
  replication: 'vm1',
  policy: 'default',
  user: 'nobody',
  job: 'job_0mwwd5axj_aaaaaaaa',
  point: 'pt_0mwwd5axj_aaaaaaaa',
  token: 'tok_0mwwd5axj_aaaaaaaa',
  hash: '0'.repeat(64),
};
// The replicator's routes name replications by id, the API's by name.
let replicationId = '';
const fill = (url: string) => url.replace(/:([a-zA-Z]+)/g, (_m, k: string) => (k === 'replication' && url.startsWith('/replicator/') ? replicationId : (SAMPLE[k] ?? 'x')));

/**
 * Walks the whole route table: every route but the public ones answers 401 without a token, and 403 to every role
 * that lacks its permission; a role that has it is let through (whatever the route then answers).
 */
describe('access control on every route', () => {
  let v: TestVault;
  const tokens: Record<string, string> = {};
  beforeAll(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
    ({ replicationId } = await protectWithPoint(v));
    for (const role of ['contributor', 'operator', 'reader'] as const) tokens[role] = await v.tokenFor(role);
    tokens.owner = v.ownerToken;
  });
  afterAll(async () => v.cleanup());

  const routes = () => v.app.routeTable.filter((r) => r.method !== 'HEAD');
  const send = (method: string, url: string, token?: string) =>
    v.app.inject({ method: method as 'GET', url: fill(url), ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}), ...(method === 'GET' || method === 'DELETE' ? {} : { payload: {} }) });

  it('declares a permission for every route and leaves only login, health and the portal\'s files public', () => {
    expect(routes().length).toBeGreaterThan(25);
    expect(routes().filter((r) => r.permission === 'public').map((r) => `${r.method} ${r.url}`).sort()).toEqual(PUBLIC);
  });

  it('answers 401 without a token, and 401 with a token that does not exist, on every other route', async () => {
    for (const r of routes().filter((x) => x.permission !== 'public')) {
      const none = await send(r.method, r.url);
      expect(none.statusCode, `${r.method} ${r.url}`).toBe(401);
      expect(none.json<{ error: { code: string } }>().error.code).toBe('unauthenticated');
      const forged = await send(r.method, r.url, `rfg_${'A'.repeat(43)}`);
      expect(forged.statusCode, `${r.method} ${r.url} (forged)`).toBe(401);
    }
  });

  it.each(['reader', 'operator', 'contributor', 'owner'] as const)('answers 403 to a %s on every route its role does not allow, and lets it through the others', async (role) => {
    const denied: string[] = [];
    const allowed: string[] = [];
    for (const r of routes().filter((x) => x.permission !== 'public')) {
      const res = await send(r.method, r.url, tokens[role]);
      const may = allows(role, r.permission as Permission);
      const key = `${r.method} ${r.url}`;
      if (may) {
        expect([401, 403], `${key} must be allowed for ${role}: ${res.body}`).not.toContain(res.statusCode);
        allowed.push(key);
      } else {
        expect(res.statusCode, `${key} must be denied for ${role}`).toBe(403);
        expect(res.json<{ error: { message: string } }>().error.message).toContain(`needs the ${r.permission} permission`);
        denied.push(key);
      }
    }
    if (role === 'owner') expect(denied).toEqual([]);
    else expect(denied.length).toBeGreaterThan(0);
    expect(allowed.length).toBeGreaterThan(0);
  });

  it('issues no agent tokens any more: agents authenticate with client certificates', async () => {
    const r = await v.call<{ error: { message: string; hint: string } }>('POST', '/api/v1/tokens', { name: 'old-agent', agentVault: 'demo' });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain('agent tokens are retired');
    expect(r.body.error.hint).toContain('refuge agent key create');
  });
});

/**
 * The same walk over HTTPS for the agent routes (and the vault's own replicator): agents and replicators
 * authenticate by client certificate. Without one, with one from another CA, or with an expired one, every agent
 * route answers 401; a machine's certificate opens its agent routes but not a replicator's, a replicator's opens
 * only its site's replicator routes; no certificate opens a route that needs a user's token.
 */
describe('access control by client certificate on every agent route', () => {
  let v: TestVault;
  let base = '';
  const certs: Record<'none' | 'foreign' | 'expired' | 'machine' | 'replicator', HttpConnection> = {} as never;
  beforeAll(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
    ({ replicationId } = await protectWithPoint(v));
    base = await v.app.listen({ host: '127.0.0.1', port: 0 });
    const ca = testCertificate().caPem;
    const file = async (): Promise<RegistrationCredentials> => {
      const k = (await v.call<RegistrationKeyResponse>('POST', '/api/v1/vaults/demo/agents/keys', {})).body;
      return { url: base, vault: 'demo', caFingerprint256: k.caFingerprint256, registrationKey: k.key };
    };
    certs.machine = (await register(await file(), { kind: 'machine', site: 'primary', machine: 'vm1' }, join(v.dataDir, 'agent-vm1'))).connection;
    certs.replicator = (await register(await file(), { kind: 'replicator', site: 'primary', names: ['127.0.0.1'] }, join(v.dataDir, 'replicator'))).connection;
    certs.none = { ca };
    const mallory = issueCertificate(createCa('Mallory CA'), { commonName: 'machine:vm1', usage: 'client' });
    certs.foreign = { ca, cert: mallory.certPem, key: mallory.keyPem };
    const { keyPem, csrPem } = keyAndCsr('machine:vm1');
    const old = signCsr({ certPem: ca, keyPem: testCertificate().caKeyPem }, csrPem, { commonName: 'machine:vm1', usage: 'client', days: 1, notBefore: new Date(Date.now() - 5 * 86400_000) });
    certs.expired = { ca, cert: old, key: keyPem };
  }, 60_000); // RSA key generation on a busy 2-core machine
  afterAll(async () => v.cleanup());

  const send = async (method: string, url: string, connection: HttpConnection) => {
    const r = await requestRaw(method, `${base}${fill(url)}`, { connection, ...(method === 'GET' || method === 'DELETE' ? {} : { body: {} }) });
    return { status: r.status, message: r.text ? ((JSON.parse(r.text) as { error?: { message?: string } }).error?.message ?? '') : '' };
  };
  const agentRoutes = () => v.app.routeTable.filter((r) => r.method !== 'HEAD' && r.permission === 'agent');

  it('answers 401 on every agent route without a certificate, with one from another CA, or with an expired one', async () => {
    expect(agentRoutes().length).toBeGreaterThan(8);
    for (const r of agentRoutes()) {
      const key = `${r.method} ${r.url}`;
      const none = await send(r.method, r.url, certs.none);
      expect(none.status, key).toBe(401);
      expect(none.message, key).toContain('needs a client certificate');
      const foreign = await send(r.method, r.url, certs.foreign);
      expect(foreign.status, key).toBe(401);
      expect(foreign.message, key).toContain("not issued by this vault's CA (issuer 'CN=Mallory CA");
      const expired = await send(r.method, r.url, certs.expired);
      expect(expired.status, key).toBe(401);
      expect(expired.message, key).toContain('expired at');
    }
  });

  it("lets a machine's certificate through its agent routes only, and a replicator's through its site's replicator routes only", async () => {
    for (const r of agentRoutes()) {
      const key = `${r.method} ${r.url}`;
      const replicatorRoute = r.url.includes('/replicators/');
      const renew = r.url.endsWith('/agents/renew');
      const machine = await send(r.method, r.url, certs.machine);
      if (replicatorRoute) expect(machine.status, key).toBe(403);
      else expect([401, 403], `${key}: ${machine.message}`).not.toContain(machine.status);
      const replicator = await send(r.method, r.url, certs.replicator);
      if (replicatorRoute || renew) expect([401, 403], `${key}: ${replicator.message}`).not.toContain(replicator.status);
      else expect(replicator.status, key).toBe(403);
    }
  });

  it('a certificate opens no route that needs a user token', async () => {
    const userRoutes = v.app.routeTable.filter((r) => r.method !== 'HEAD' && r.permission !== 'agent' && r.permission !== 'public');
    expect(userRoutes.length).toBeGreaterThan(25);
    for (const r of userRoutes) expect((await send(r.method, r.url, certs.machine)).status, `${r.method} ${r.url}`).toBe(401);
  });
});

describe('logins, the audit log and secrets', () => {
  let v: TestVault;
  beforeAll(async () => {
    v = await createTestVault();
    await seedConfiguration(v);
    await protectWithPoint(v);
  });
  afterAll(async () => v.cleanup());

  it('limits failed logins: after 5 wrong passwords even the right one waits (429 with retry-after)', async () => {
    await v.call('POST', '/api/v1/users', { name: 'mallory', password: 'right-password-123', role: 'reader' });
    for (let i = 0; i < 5; i++) {
      const r = await v.call('POST', '/api/v1/auth/login', { user: 'mallory', password: `wrong-${i}` }, { authorization: '' });
      expect(r.status).toBe(401);
    }
    const blocked = await v.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { user: 'mallory', password: 'right-password-123' } });
    expect(blocked.statusCode).toBe(429);
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    // Another user from the same address is not locked out by mallory's failures.
    await v.call('POST', '/api/v1/users', { name: 'alice', password: 'alice-password-1', role: 'operator' });
    expect((await v.call('POST', '/api/v1/auth/login', { user: 'alice', password: 'alice-password-1' }, { authorization: '' })).status).toBe(201);
  });

  it('records every change and every failover with who did it, and never a secret', async () => {
    await v.call('POST', '/api/v1/users', { name: 'olivia', password: 'olivia-password-1', role: 'operator' });
    const login = await v.call<{ token: string }>('POST', '/api/v1/auth/login', { user: 'olivia', password: 'olivia-password-1' }, { authorization: '' });
    const failover = await v.call<{ id: string }>('POST', '/api/v1/vaults/demo/replications/vm1/failover', {}, { authorization: `Bearer ${login.body.token}` });
    expect(failover.status).toBe(202);
    const denied = await v.call('POST', '/api/v1/vaults/demo/sites', { name: 'nope' }, { authorization: `Bearer ${login.body.token}` });
    expect(denied.status).toBe(403);
    const audit = await v.call<{ items: { principal: string; action: string; target: string; status: number; details: Record<string, unknown> }[] }>('GET', '/api/v1/audit?limit=100');
    const entries = audit.body.items;
    const fo = entries.find((e) => e.action.endsWith('/failover'));
    expect(fo).toMatchObject({ principal: 'user:olivia', action: 'POST /api/v1/vaults/:vault/replications/:replication/failover', target: 'replication=vm1', status: 202 });
    expect(fo?.details.location).toBe(`/api/v1/vaults/demo/jobs/${failover.body.id}`);
    expect(entries.some((e) => e.action === 'POST /api/v1/vaults/:vault/sites' && e.status === 201)).toBe(true);
    const text = JSON.stringify(entries);
    expect(text).not.toContain('olivia-password-1');
    expect(text).not.toContain(login.body.token);
    expect(entries.find((e) => e.action === 'POST /api/v1/users' && JSON.stringify(e.details).includes('olivia'))?.details.body).toMatchObject({ password: '[redacted]' });
  });

  it('writes no password or token to the vault log, even when requests fail', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'trace' }, new Writable({ write: (c: Buffer, _e, cb) => void (lines.push(c.toString()), cb()) }));
    const { assembleVault } = await import('../../../src/api/server.js');
    const second = await assembleVault({ dataDir: v.dataDir, databaseUrl: `sqlite:${v.dataDir}/log-test.db`, log, instanceId: 'log-test' });
    try {
      const secret = 'log-secret-password-1';
      await second.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { user: 'x', password: secret } });
      await second.app.inject({ method: 'GET', url: '/api/v1/vaults', headers: { authorization: `Bearer rfg_${'B'.repeat(43)}` } });
      await second.app.inject({ method: 'POST', url: '/api/v1/vaults', payload: '{"password": "' + secret, headers: { 'content-type': 'application/json' } });
      const all = lines.join('');
      expect(all).not.toContain(secret);
      expect(all).not.toContain('B'.repeat(43));
    } finally {
      await second.close();
    }
  });
});
