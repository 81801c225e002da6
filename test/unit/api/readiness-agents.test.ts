import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reachabilityReport } from '../../../src/agent/reachability.js';
import { startVaultServer, type VaultServer } from '../../../src/api/server.js';
import { initVault } from '../../../src/api/vault-init.js';
import { requestJson, type HttpConnection } from '../../../src/core/http-client.js';
import { silentLogger } from '../../../src/core/log.js';
import type { AgentReport } from '../../../src/protocol/schemas.js';
import type { CheckResult, ReadinessReport } from '../../../src/vault/readiness/types.js';
import { FakeFabric } from '../../helpers/fake-fabric.js';
import { testCertificate } from '../../helpers/test-vault.js';

/**
 * The networking and certificate checks from an agent's real probes of a real HTTPS vault: reachable and trusted
 * (pass), a replicator it cannot reach (fail, naming host and port), the vault CA not given to the agent (fail,
 * naming the issuer), a clock a minute off (warning), no report yet (warning); the allow-list always printed.
 */
describe('readiness from the agent: networking and certificates', () => {
  let dir: string;
  let server: VaultServer;
  let owner: HttpConnection;
  let ca: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-ready-'));
    const init = await initVault({ dataDir: dir, certificate: testCertificate() });
    owner = { token: init.credentials.token, ca: init.credentials.ca };
    ca = init.credentials.ca;
    const fabric = new FakeFabric();
    server = await startVaultServer({ dataDir: dir, port: 0, log: silentLogger, fabricFor: () => fabric, monitorIntervalMs: 0 });
    const api = (m: string, p: string, b?: unknown) => requestJson(m, `${server.url}/api/v1${p}`, { connection: owner, ...(b === undefined ? {} : { body: b }) });
    await api('POST', '/vaults', { name: 'demo' });
    await api('POST', '/vaults/demo/sites', { name: 'primary' });
    await api('POST', '/vaults/demo/sites', { name: 'recovery' });
    await api('POST', '/vaults/demo/policies', { name: 'default' });
    await api('POST', '/vaults/demo/agents/register', { site: 'primary', agentVersion: '0.1.0', machine: { name: 'vm1', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 256, disks: [{ name: 'disk0', sizeBytes: 1 << 20 }], boot: { kind: 'disk' } } });
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const heartbeat = (body: { report?: AgentReport; sentAt?: string }) =>
    requestJson('POST', `${server.url}/api/v1/vaults/demo/agents/vm1/heartbeat`, { connection: owner, body: { agentVersion: '0.1.0', ...body } });
  const check = async () => {
    const r = await requestJson<ReadinessReport>('POST', `${server.url}/api/v1/vaults/demo/readiness`, { connection: owner, body: { machine: 'vm1', targetSite: 'recovery' } });
    const of = (n: string) => r.results.find((x) => x.check === n) as CheckResult;
    return { networking: of('networking'), certificates: of('certificates') };
  };

  it('no report yet: warning, with the outbound allow-list', async () => {
    const { networking } = await check();
    expect(networking.status).toBe('warning');
    const port = Number(new URL(server.url).port);
    expect(networking.measured.allowList).toEqual([{ host: '127.0.0.1', port, purpose: 'vault API (registration, heartbeats)' }]);
    expect(networking.message).toContain(`outbound allow-list: 127.0.0.1:${port}`);
  });

  it('reachable and trusted: pass', async () => {
    const report = await reachabilityReport({ vault: server.url, replicator: `${server.url}/replicator/v1` }, { ca });
    expect(report.endpoints.map((e) => [e.role, e.dns, e.tcp, e.tls])).toEqual([['vault', true, true, 'trusted'], ['replicator', true, true, 'trusted']]);
    await heartbeat({ report, sentAt: new Date().toISOString() });
    const { networking, certificates } = await check();
    expect(networking.status).toBe('pass');
    expect(certificates.status).toBe('pass');
  });

  it('an agent that cannot reach the replicator: networking fails naming host and port', async () => {
    const report = await reachabilityReport({ vault: server.url, replicator: 'https://127.0.0.1:9/replicator/v1' }, { ca });
    await heartbeat({ report });
    const { networking } = await check();
    expect(networking.status).toBe('fail');
    expect(networking.message).toMatch(/^the agent of 'vm1' cannot reach the replicator at 127\.0\.0\.1:9: no TCP connection/);
    expect(networking.remediation).toContain('allow outbound connections from the machines to 127.0.0.1:');
  });

  it('an agent without the vault CA: certificates fail naming the untrusted issuer', async () => {
    const report = await reachabilityReport({ vault: server.url });
    expect(report.endpoints[0]).toMatchObject({ tls: 'untrusted', issuer: 'CN=Refuge test CA, O=Refuge' });
    await heartbeat({ report });
    const { certificates } = await check();
    expect(certificates.status).toBe('fail');
    expect(certificates.message).toBe("the agent of 'vm1' does not trust the vault's certificate, issued by 'CN=Refuge test CA, O=Refuge'");
    expect(certificates.remediation).toContain("give agents the vault's CA");
  });

  it('a clock a minute off: certificates warn with the measured skew; ten minutes off: fail', async () => {
    await heartbeat({ report: await reachabilityReport({ vault: server.url }, { ca }), sentAt: new Date(Date.now() - 60_000).toISOString() });
    const warn = (await check()).certificates;
    expect(warn.status).toBe('warning');
    expect(warn.message).toMatch(/^the clock of 'vm1' is (60|61) s off the vault's$/);
    await heartbeat({ sentAt: new Date(Date.now() + 600_000).toISOString() });
    expect((await check()).certificates.status).toBe('fail');
  });
});
