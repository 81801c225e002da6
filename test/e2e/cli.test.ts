import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startVaultServer, type VaultServer } from '../../src/api/server.js';
import { silentLogger } from '../../src/core/log.js';
import { FakeFabric } from '../helpers/fake-fabric.js';
import { testCertificate } from '../helpers/test-vault.js';
import { initVault } from '../../src/api/vault-init.js';
import { requestJson } from '../../src/core/http-client.js';

const root = join(import.meta.dirname, '..', '..');

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

let credentials = '';
function cli(url: string, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(root, 'bin', 'refuge.js'), '--url', url, '--credentials', credentials, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Runs the CLI with only the options given (no default credentials), standard input and extra environment. */
function cliWith(url: string | undefined, args: string[], input: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [join(root, 'bin', 'refuge.js'), ...(url ? ['--url', url] : []), ...args], { env: { ...process.env, REFUGE_CONFIG: '/nonexistent', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end(input);
  });
}

/** The `refuge` command against a running vault: --json output, human output, and errors with hints and exit codes. */
describe('refuge CLI', () => {
  let dir: string;
  let server: VaultServer;
  let url: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-cli-'));
    const fabric = new FakeFabric();
    credentials = (await initVault({ dataDir: dir, certificate: testCertificate() })).credentialsPath;
    server = await startVaultServer({ dataDir: dir, port: 0, log: silentLogger, fabricFor: () => fabric });
    url = server.url;
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates and lists configuration, as JSON and as tables', async () => {
    const created = await cli(url, ['--json', 'vault', 'create', 'demo']);
    expect(created.code).toBe(0);
    expect((JSON.parse(created.stdout) as { name: string }).name).toBe('demo');
    expect((await cli(url, ['site', 'create', 'primary'])).code).toBe(0);
    expect((await cli(url, ['site', 'create', 'recovery', '--vcpus', '8'])).code).toBe(0);
    expect((await cli(url, ['vault', 'set-location', 'recovery'])).stdout).toMatch(/location:\s+recovery/);
    const sites = JSON.parse((await cli(url, ['--json', 'site', 'list'])).stdout) as { items: { name: string; capacity: { vcpus: number } }[] };
    expect(sites.items.map((s) => [s.name, s.capacity.vcpus])).toEqual([['primary', 16], ['recovery', 8]]);
    expect((await cli(url, ['policy', 'create', 'default', '--crash-interval', '30s'])).code).toBe(0);
    const table = await cli(url, ['policy', 'list']);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+CRASHINTERVALSECONDS/);
    expect(table.stdout).toMatch(/default\s+30\s+24\s+900/);
  });

  it('names what is missing and how to find it', async () => {
    const r = await cli(url, ['failover', 'ghost']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("refuge: replication 'ghost' not found");
    expect(r.stderr).toContain('hint: enable replication with `refuge replication enable MACHINE`');
  });

  it('lists the allowed operations when an operation does not fit the state', async () => {
    const { token, ca } = JSON.parse(await readFile(credentials, 'utf8')) as { token: string; ca: string };
    await requestJson('POST', `${url}/api/v1/vaults/demo/agents/register`, {
      connection: { token, ca },
      body: { site: 'primary', agentVersion: 't', machine: { name: 'vm1', hostname: 'h', os: 'linux', cpus: 1, memoryMiB: 128, disks: [{ name: 'disk0', sizeBytes: 1048576 }], boot: { kind: 'disk' } } },
    });
    const enabled = await cli(url, ['replication', 'enable', 'vm1', '--target', 'recovery', '--no-wait']);
    expect(enabled.stdout).toContain('replication vm1 enabled: seeding');
    const r = await cli(url, ['failover', 'vm1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('failover is not allowed on replication');
    expect(r.stderr).toContain('allowed operations now: resync, repair, disable');
    const shown = JSON.parse((await cli(url, ['--json', 'replication', 'show', 'vm1'])).stdout) as { allowedOperations: string[] };
    expect(shown.allowedOperations).toEqual(['resync', 'repair', 'disable']);
  });

  it('refuge check prints each readiness check with its measured value and fix; a fail exits 3', async () => {
    const ok = await cli(url, ['check', 'vm1']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^Readiness of replication vm1 \(on-demand, .*\): WARNING$/m);
    expect(ok.stdout).toMatch(/^ {2}PASS {2}account {14}user:admin may do this in vault 'demo'/m);
    expect(ok.stdout).toMatch(/^\d+ passed, [1-9] warning\(s\), 0 failed$/m);
    expect(ok.stdout).toMatch(/^ {2}WARN {2}networking {11}no recent reachability report from the agent of 'vm1'; outbound allow-list: 127\.0\.0\.1:\d+$/m);
    expect((await cli(url, ['site', 'update', 'recovery', '--vcpus', '0'])).code).toBe(0);
    const fail = await cli(url, ['check', 'vm1']);
    expect(fail.code).toBe(3);
    expect(fail.stdout).toContain("FAIL  target-capacity      site 'recovery' needs 1 vCPUs, has 0 free");
    expect(fail.stdout).toMatch(/fix: raise the capacity of site 'recovery'/);
    expect(fail.stdout).toMatch(/^\d+ passed, \d+ warning\(s\), 1 failed: fix the failures before enabling or failing over/m);
    await cli(url, ['site', 'update', 'recovery', '--vcpus', '8']);
  });

  it('an owner creates a user; the user logs in, and the session works for reads but not for changes', async () => {
    const created = await cliWith(url, ['--credentials', credentials, 'user', 'create', 'olga', '--role', 'reader', '--password-stdin'], 'olga-password-123\n');
    expect(created.code).toBe(0);
    const config = join(dir, 'olga.json');
    const env = { REFUGE_CONFIG: config };
    const login = await cliWith(url, ['--ca', join(dir, 'tls', 'ca.crt'), 'login', '--user', 'olga', '--password-stdin'], 'olga-password-123\n', env);
    expect(login.stdout).toMatch(/logged in to https:\/\/127\.0\.0\.1:\d+ as olga \(reader\)/);
    const who = await cliWith(undefined, ['--json', 'whoami'], '', env);
    expect(JSON.parse(who.stdout)).toMatchObject({ name: 'user:olga', role: 'reader' });
    const denied = await cliWith(undefined, ['site', 'create', 'nope'], '', env);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('user:olga (role reader) may not do this: it needs the configure permission');
    const wrong = await cliWith(url, ['--ca', join(dir, 'tls', 'ca.crt'), 'login', '--user', 'olga', '--password-stdin'], 'not-her-password\n', { REFUGE_CONFIG: join(dir, 'x.json') });
    expect(wrong.stderr).toContain('wrong user name or password');
  });

  it('rejects bad arguments before calling the vault', async () => {
    const r = await cli(url, ['policy', 'create', 'p2', '--crash-interval', 'soon']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("'soon' is not a duration");
    expect(r.stderr).toContain('hint: use e.g. 30s');
  });

  it('says when the vault cannot be reached', async () => {
    const r = await cli('https://127.0.0.1:9', ['vault', 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refuge: GET https:\/\/127\.0\.0\.1:9\/api\/v1\/vaults failed/);
    expect(r.stderr).toContain('is the server at https://127.0.0.1:9 running?');
  });

  it('refuses without a token, and names the untrusted issuer without the vault CA', async () => {
    const noToken = await new Promise<CliResult>((resolve) => {
      execFile(process.execPath, [join(root, 'bin', 'refuge.js'), '--url', url, '--ca', join(dir, 'tls', 'ca.crt'), 'vault', 'list'], { env: { ...process.env, REFUGE_CONFIG: join(dir, 'none.json') } }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }));
    });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('this route needs a token');
    const untrusted = await new Promise<CliResult>((resolve) => {
      execFile(process.execPath, [join(root, 'bin', 'refuge.js'), '--url', url, '--token', 'rfg_x', 'vault', 'list'], { env: { ...process.env, REFUGE_CONFIG: join(dir, 'none.json') } }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }));
    });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain("issued by 'CN=Refuge test CA, O=Refuge'");
    expect(untrusted.stderr).toContain('is not trusted here');
    expect(untrusted.stderr).toContain('hint: trust the vault');
  });
});
