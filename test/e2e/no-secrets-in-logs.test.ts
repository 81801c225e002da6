import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnRefuge, stopChild } from '../../src/cli/quickstart/children.js';
import { requestRaw } from '../../src/core/http-client.js';
import { initTestVault, startVaultProcess, type VaultProcess } from '../helpers/vault-process.js';
import { waitFor } from '../helpers/agent/agent-fixture.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const MiB = 1024 * 1024;

/** A line from the middle of a PEM body: enough to recognize the key anywhere, never a header everyone shares. */
const pemLine = (pem: string) => {
  const body = pem.split('\n').filter((l) => l && !l.startsWith('-----'));
  return body[Math.floor(body.length / 2)] as string;
};

/**
 * R10, no secret in any log: a full run with real processes at the most verbose log level (the vault, a standalone
 * replicator and an agent, each registering with a one-time key, replicating a disk; users logging in right and
 * wrong, forged tokens, a reused key), then every log file and every command's output is searched for each secret:
 * tokens, passwords, registration keys, private keys and the vault's encryption key.
 */
describe('no secret in any log of a full run', () => {
  let dir: string;
  let vault: VaultProcess;
  const children: ChildProcess[] = [];
  const outputs: string[] = [];
  const secrets = new Map<string, string>();

  const cli = async (args: string[]) => {
    const r = await run(process.execPath, [join(root, 'bin', 'refuge.js'), ...args], { cwd: root, env: { ...process.env, REFUGE_LOG_LEVEL: 'trace' } });
    outputs.push(r.stdout, r.stderr);
    return r.stdout;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-secrets-'));
    const init = await initTestVault(undefined, join(dir, 'vault'));
    vault = await startVaultProcess({ ...init, env: { REFUGE_LOG_LEVEL: 'trace' } });
    const owner = join(dir, 'owner.json');
    await writeFile(owner, JSON.stringify({ ...init.credentials, url: vault.url }), { mode: 0o600 });
    secrets.set('owner token', init.credentials.token);
    secrets.set('owner password', 'owner-password-1');

    await vault.api('POST', '/vaults', { name: 'demo' });
    await vault.api('POST', '/vaults/demo/sites', { name: 'primary' });
    await vault.api('POST', '/vaults/demo/sites', { name: 'recovery' });
    await vault.api('POST', '/vaults/demo/policies', { name: 'default', crashIntervalSeconds: 1 });

    // Users: a right and a wrong login, and forged tokens.
    const login = await requestRaw('POST', `${vault.url}/api/v1/auth/login`, { body: { user: 'owner', password: 'owner-password-1' }, connection: { ca: init.credentials.ca } });
    secrets.set('session token', (JSON.parse(login.text) as { token: string }).token);
    const wrong = `wrong-password-${randomBytes(6).toString('hex')}`;
    secrets.set('wrong password', wrong);
    await requestRaw('POST', `${vault.url}/api/v1/auth/login`, { body: { user: 'owner', password: wrong }, connection: { ca: init.credentials.ca } });
    const forged = `rfg_${randomBytes(32).toString('base64url')}`;
    secrets.set('forged token', forged);
    await requestRaw('GET', `${vault.url}/api/v1/vaults`, { connection: { ca: init.credentials.ca, token: forged } });

    // Registration files (one-time keys) for the agent and the replicator, as an operator makes them.
    const files: Record<string, string> = {};
    for (const who of ['agent', 'replicator']) {
      files[who] = join(dir, `${who}-registration.json`);
      await cli(['--credentials', owner, '--vault', 'demo', 'agent', 'key', 'create', '--write', files[who]]);
      secrets.set(`${who} registration key`, (JSON.parse(await readFile(files[who], 'utf8')) as { registrationKey: string }).registrationKey);
    }

    process.env.REFUGE_LOG_LEVEL = 'trace'; // for the processes spawned below (this test file runs in its own worker)
    const replicator = spawnRefuge(['--credentials', files.replicator as string, 'replicator', '--site', 'recovery', '--state-dir', join(dir, 'replicator')], join(dir, 'replicator.log'));
    children.push(replicator);
    const image = join(dir, 'disk0.raw');
    const disk = Buffer.alloc(8 * MiB);
    randomBytes(2 * MiB).copy(disk, 3 * MiB);
    await writeFile(image, disk);
    const agent = spawnRefuge(['--credentials', files.agent as string, 'agent', '--site', 'primary', '--name', 'vm1', '--disk', `disk0=${image}`, '--state-dir', join(dir, 'agent'), '--heartbeat', '1s'], join(dir, 'agent.log'));
    children.push(agent);
    await waitFor(async () => (await vault.api<{ items: unknown[] }>('GET', '/vaults/demo/machines')).items.length === 1, 60_000, 'the agent registering');
    await waitFor(async () => (await vault.api<{ items: unknown[] }>('GET', '/vaults/demo/replicators')).items.length === 1, 60_000, 'the replicator registering');
    await vault.api('POST', '/vaults/demo/replications', { machine: 'vm1', policy: 'default', targetSite: 'recovery' });
    await waitFor(async () => (await vault.api<{ items: unknown[] }>('GET', '/vaults/demo/replications/vm1/points')).items.length >= 2, 90_000, 'two recovery points');

    // A reused key: refused, and the refusal is logged without the key.
    await run(process.execPath, [join(root, 'bin', 'refuge.js'), '--credentials', files.agent as string, 'agent', 'register', '--site', 'primary', '--name', 'vm2', '--state-dir', join(dir, 'vm2')], { cwd: root })
      .then(() => expect.fail('a reused key must be refused'), (err: { stderr: string }) => outputs.push(err.stderr));

    for (const c of children) await stopChild(c);
    await vault.stop();
    secrets.set('agent private key', pemLine(await readFile(join(dir, 'agent', 'identity', 'client.key'), 'utf8')));
    secrets.set('replicator private key', pemLine(await readFile(join(dir, 'replicator', 'identity', 'client.key'), 'utf8')));
    secrets.set('vault CA key', pemLine(await readFile(join(dir, 'vault', 'tls', 'ca.key'), 'utf8')));
    secrets.set('vault server key', pemLine(await readFile(join(dir, 'vault', 'tls', 'server.key'), 'utf8')));
    const vaultKey = await readFile(join(dir, 'vault', 'keys', 'vault.key'));
    secrets.set('vault encryption key (hex)', vaultKey.toString('hex'));
    secrets.set('vault encryption key (base64)', vaultKey.toString('base64'));
  }, 300_000);
  afterAll(async () => {
    for (const c of children) await stopChild(c);
    await vault?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs the run (registrations, points) but none of its secrets', async () => {
    const logs = [join(dir, 'agent.log'), join(dir, 'replicator.log'), ...(await readdir(join(dir, 'vault'))).filter((n) => n.endsWith('.log')).map((n) => join(dir, 'vault', n))];
    const text = (await Promise.all(logs.map((l) => readFile(l, 'utf8')))).join('\n') + outputs.join('\n');
    // The logs are there and verbose: each process said what it did.
    expect(text).toContain('agent registered: client certificate issued');
    expect(text).toContain('recovery point committed');
    expect(text).toContain('replicator registered with the vault');
    expect(text).toContain('already used');
    expect(secrets.size).toBe(13);
    for (const [what, secret] of secrets) {
      expect(secret.length, what).toBeGreaterThan(15);
      expect(text.includes(secret), `${what} appears in a log`).toBe(false);
    }
  });
});
