import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startVaultServer, type VaultServer } from '../../src/api/server.js';
import { initVault } from '../../src/api/vault-init.js';
import { buildProgram } from '../../src/cli/program.js';
import { requestJson } from '../../src/core/http-client.js';
import { silentLogger } from '../../src/core/log.js';
import { loadIdentity } from '../../src/protocol/identity.js';
import { agentDouble, type AgentInstructions } from '../helpers/agent-double.js';
import { runCli } from '../helpers/cli-in-process.js';
import { FakeFabric } from '../helpers/fake-fabric.js';
import { startWebhookReceiver } from '../helpers/receivers.js';
import { testCertificate } from '../helpers/test-vault.js';
import { seedReplications, type VaultProcess } from '../helpers/vault-process.js';

type Json = Record<string, unknown> & { items?: Record<string, unknown>[] };
type Rep = { id: string; state: string; testFailoverState: string; reversed: boolean; sourceSite: string; targetSite: string; allowedOperations: string[]; rpo: { latestPoint: { id: string } } | null; failover?: Record<string, { pointId: string }> };

/** Leaf commands not run here, and why. Every other leaf must be in CASES: a new command fails this test until it is. */
const NOT_RUN: Record<string, string> = {
  'vault serve': 'a server that runs until stopped: every e2e test starts one (test/helpers/vault-process.ts)',
  replicator: 'a daemon that runs until stopped: test/e2e/agent-processes.test.ts runs it',
  quickstart: 'boots VMs for minutes: test/e2e/quickstart.test.ts runs it and reads its JSON summary',
  completion: 'prints a shell script, not data: checked below by sourcing it in bash',
};

/**
 * Every leaf command of the `refuge` program, found by walking commander's command tree (so a command added later
 * is covered or fails the first test), run with --json against a real vault (HTTPS, its own CA, SQLite; machines
 * on a fake fabric) holding real data; each must exit 0 and print one JSON document, checked against the data.
 */
describe('refuge --json: every command', () => {
  let dir: string;
  let server: VaultServer;
  let credentials: string;
  const ctx: Record<string, string> = {};
  const hook = startWebhookReceiver();
  const api = <T = Json>(method: string, path: string, body?: unknown) =>
    requestJson<T>(method, `${server.url}/api/v1${path}`, { connection: { token: ctx.token, ca: ctx.ca }, ...(body === undefined ? {} : { body }) });
  const waitJob = async (id: string, state: string) => {
    for (let i = 0; i < 400 && (await api<{ state: string }>('GET', `/vaults/demo/jobs/${id}`)).state !== state; i++) await new Promise((r) => setTimeout(r, 50));
  };
  const rep = (name: string) => api<Rep>('GET', `/vaults/demo/replications/${name}`);
  const fabrics = new Map<string, FakeFabric>();
  /** Each site its own fake fabric, so a machine moving between sites is stopped at one and started at the other. */
  const fabric = (site: string): FakeFabric => {
    const f = fabrics.get(site) ?? new FakeFabric();
    fabrics.set(site, f);
    return f;
  };
  const agent = agentDouble({ get url() { return server.url; }, connection: { get token() { return ctx.token; }, get ca() { return ctx.ca; } }, api });
  let seeded: Map<string, Buffer>;
  /** Machine `name`'s seeded disk, with its first 4 KiB block filled with `n` (0: as seeded). */
  const content = (name: string, n: number) => {
    const d = Buffer.from(seeded.get(name) as Buffer);
    if (n > 0) d.fill(n, 0, 4096);
    return d;
  };
  /** The agent's part: once the vault asks `name`'s agent at `site` for it, a point of content(name, n). */
  const ship = async (name: string, site: string, asks: (i: AgentInstructions) => boolean, n: number) => {
    ctx.shipped = await agent.shipWhen(name, site, asks, content(name, n));
  };

  /**
   * In order: [command path and arguments, check of the parsed output, work done beside the command while it runs
   * (the agent's part of an operation), work done before it]. Arguments may name values found earlier.
   */
  const CASES: [() => string[], (out: Json) => void | Promise<void>, (() => Promise<unknown>)?, (() => Promise<unknown>)?][] = [
    [() => ['health'], (o) => expect(o.status).toBe('ok')],
    [() => ['whoami'], (o) => expect(o.role).toBe('owner')],
    [() => ['vault', 'create', 'extra'], (o) => expect(o.name).toBe('extra')],
    [() => ['vault', 'list'], (o) => expect(o.items?.map((v) => v.name)).toEqual(['demo', 'extra'])],
    [() => ['--vault', 'demo', 'vault', 'show'], (o) => expect(o.name).toBe('demo')],
    [() => ['vault', 'delete', 'extra'], (o) => expect(o).toEqual({ deleted: 'extra' })],
    [() => ['vault', 'set-location', 'recovery'], (o) => expect(o.location).toBe('recovery')],
    [() => ['vault', 'init', '--data', join(dir, 'second-vault'), '--owner', 'root'], (o) => expect(o.owner).toBe('root')],
    [() => ['site', 'create', 'third', '--vcpus', '2'], (o) => expect(o.capacity).toMatchObject({ vcpus: 2 })],
    [() => ['site', 'update', 'third', '--vcpus', '8'], (o) => expect(o.capacity).toMatchObject({ vcpus: 8 })],
    [() => ['site', 'list'], (o) => expect(o.items?.map((s) => s.name)).toEqual(['primary', 'recovery', 'third'])],
    [() => ['site', 'show', 'third'], (o) => expect(o.provider).toBe('qemu')],
    [() => ['site', 'set-networks', 'primary', 'lan=50@10.1.0.0/24'], (o) => expect(o.networks).toEqual([{ name: 'lan', addresses: 50, cidr: '10.1.0.0/24' }])],
    [() => ['site', 'delete', 'third'], (o) => expect(o).toEqual({ deleted: 'third' })],
    [() => ['policy', 'create', 'p2', '--crash-interval', '30s', '--chunk-size-kib', '16'], (o) => expect([o.crashIntervalSeconds, o.chunkSizeKiB]).toEqual([30, 16])],
    [() => ['policy', 'update', 'p2', '--bandwidth-mibps', '20'], (o) => expect(o.bandwidthMiBps).toBe(20)],
    [() => ['policy', 'list'], (o) => expect(o.items?.map((p) => p.name)).toEqual(['default', 'p2'])],
    [() => ['policy', 'show', 'p2'], (o) => expect(o.retentionHours).toBe(24)],
    [() => ['policy', 'delete', 'p2'], (o) => expect(o).toEqual({ deleted: 'p2' })],
    [() => ['machine', 'list'], (o) => expect(o.items?.map((m) => m.name)).toEqual(['app', 'db', 'web'])],
    [() => ['machine', 'show', 'web'], (o) => expect(o.disks).toEqual([{ name: 'disk0', sizeBytes: 4 * 1024 * 1024 }])],
    [() => ['machine', 'agents'], (o) => expect(o.items?.map((a) => a.machine)).toEqual(['app', 'db', 'web'])],
    [() => ['replication', 'list'], (o) => expect(o.items?.map((r) => [r.name, r.state])).toEqual([['db', 'protected'], ['web', 'protected']])],
    [() => ['replication', 'show', 'web'], (o) => expect(o.allowedOperations).toEqual(['test-failover', 'planned-failover', 'failover', 'resync', 'repair', 'disable'])],
    [() => ['replication', 'watch', 'web', '--until-protected'], (o) => expect(o.state).toBe('protected')],
    [() => ['point', 'list', 'web'], (o) => {
      ctx.point = String(o.items?.[0]?.id);
      expect(o.items).toHaveLength(1);
    }],
    [() => ['point', 'show', 'web', ctx.point as string], (o) => expect(o.disks).toMatchObject([{ name: 'disk0', sizeBytes: 4 * 1024 * 1024 }])],
    [() => ['replication', 'enable', 'app', '--target', 'recovery', '--no-wait'], (o) => expect(o.state).toBe('seeding')],
    [() => ['group', 'create', 'g1'], (o) => expect(o).toMatchObject({ name: 'g1', replications: [] })],
    [() => ['replication', 'update', 'web', '--group', 'g1'], (o) => expect(o.group).toBe('g1')],
    [() => ['group', 'list'], (o) => expect(o.items?.[0]).toMatchObject({ name: 'g1', replications: ['web'] })],
    [() => ['group', 'show', 'g1'], (o) => expect(o.replications).toEqual(['web'])],
    [() => ['replication', 'update', 'web', '--group', 'none'], (o) => expect(o.group).toBeNull()],
    [() => ['group', 'delete', 'g1'], (o) => expect(o).toEqual({ deleted: 'g1' })],
    [() => ['site', 'set-networks', 'recovery', 'lan=50', 'isolated=50'], (o) => expect((o.networks as unknown[]).length).toBe(2)],
    [() => ['network-mapping', 'create', 'lan', '--source-site', 'primary', '--source-network', 'lan', '--target-site', 'recovery', '--target-network', 'lan', '--test-network', 'isolated'], (o) => expect(o.testNetwork).toBe('isolated')],
    [() => ['network-mapping', 'list'], (o) => expect(o.items?.map((m) => m.name)).toEqual(['lan'])],
    [() => ['network-mapping', 'show', 'lan'], (o) => expect(o.sourceNetwork).toBe('lan')],
    [() => ['network-mapping', 'delete', 'lan'], (o) => expect(o).toEqual({ deleted: 'lan' })],
    [() => ['plan', 'create', 'app-plan', '--file', join(dir, 'plan.json')], (o) => expect(o.groups).toEqual([{ name: 'data', replications: ['db'], pre: [], post: [{ name: 'check', kind: 'manual', target: 'look at it' }] }])],
    [() => ['plan', 'update', 'app-plan', '--file', join(dir, 'plan2.json')], (o) => expect((o.groups as unknown[]).length).toBe(2)],
    [() => ['plan', 'list'], (o) => expect(o.items?.map((p) => p.name)).toEqual(['app-plan'])],
    [() => ['plan', 'show', 'app-plan'], (o) => expect(o.description).toBe('two groups')],
    [() => ['check', 'web'], (o) => {
      ctx.report = String(o.id);
      expect(o).toMatchObject({ scope: 'replication', subject: 'web' });
    }],
    [() => ['readiness', 'list', '--subject', 'web'], (o) => expect(o.items?.map((r) => r.id)).toContain(ctx.report)],
    [() => ['readiness', 'show', ctx.report as string], (o) => expect((o.results as unknown[]).length).toBeGreaterThan(3)],
    [() => ['alert', 'channel-add', 'hook', '--webhook', ctx.hook as string], (o) => expect(o).toMatchObject({ name: 'hook', kind: 'webhook' })],
    [() => ['alert', 'channel-list'], (o) => expect(o.items?.map((c) => c.name)).toEqual(['hook'])],
    [() => ['alert', 'channel-show', 'hook'], (o) => expect(o.minSeverity).toBe('warning')],
    [() => ['alert', 'channel-test', 'hook'], async (o) => {
      expect(o.delivered).toBe(true);
      expect((await hook).received).toHaveLength(1);
    }],
    [() => ['alert', 'channel-delete', 'hook'], (o) => expect(o).toEqual({ deleted: 'hook' })],
    [() => ['alert', 'list'], (o) => {
      ctx.alert = String(o.items?.[0]?.id);
      expect(o.items?.map((a) => a.kind)).toEqual(['rpo-over-threshold']);
    }],
    [() => ['alert', 'show', ctx.alert as string], (o) => expect(o.subject).toBe('web')],
    [() => ['events', '--limit', '5'], (o) => expect(o.items?.map((e) => e.type)).toContain('replication.enabled')],
    [() => ['user', 'create', 'bob', '--role', 'reader'], (o) => expect(o).toMatchObject({ name: 'bob', role: 'reader' })],
    [() => ['user', 'list'], (o) => expect(o.items?.map((u) => u.name)).toEqual(['admin', 'bob'])],
    [() => ['user', 'set-role', 'bob', 'operator'], (o) => expect(o.role).toBe('operator')],
    [() => ['user', 'update', 'bob', '--disable'], (o) => expect(o.disabled).toBe(true)],
    [() => ['login', '--user', 'admin'], (o) => expect(o).toMatchObject({ user: 'admin', role: 'owner' })],
    [() => ['token', 'create', 'ci', '--role', 'reader'], (o) => {
      ctx.tokenId = String((o.info as Json).id);
      expect(String(o.token)).toMatch(/^rfg_/);
    }],
    [() => ['token', 'list'], (o) => expect(o.items?.map((t) => t.name)).toContain('ci')],
    [() => ['token', 'revoke', ctx.tokenId as string], (o) => expect(o).toEqual({ revoked: ctx.tokenId })],
    [() => ['audit', '--limit', '3'], (o) => expect(o.items?.[0]).toMatchObject({ action: 'DELETE /api/v1/tokens/:token' })],
    // Operations on one machine.
    [() => ['test-failover', 'web'], (o) => expect(o).toMatchObject({ type: 'test-failover', state: 'succeeded', result: { pointId: ctx.point } })],
    [() => ['machine', 'status', 'web-test', '--site', 'recovery'], (o) => expect(o.state).toBe('running')],
    [() => ['machine', 'console', 'web-test', '--site', 'recovery'], (o) => expect(o.console).toBe('console of web-test\n')],
    [() => ['test-failover-cleanup', 'web'], async (o) => {
      expect(o.state).toBe('succeeded');
      expect((await rep('web')).testFailoverState).toBe('none');
    }],
    // A recovery plan whose first group waits for a manual approval before its machine starts.
    [() => ['plan', 'dry-run', 'app-plan', 'test-failover'], (o) => {
      expect(o.wouldRun, JSON.stringify(o.blocking)).toBe(true);
      expect((o.order as { pre: { name: string }[]; machines: { replication: string }[] }[]).map((g) => [g.pre.map((a) => a.name), g.machines.map((m) => m.replication)])).toEqual([[['check'], ['db']], [[], ['web']]]);
    }],
    [() => ['plan', 'run', 'app-plan', 'test-failover'], async (o) => {
      ctx.pj = String(o.id);
      expect(o).toMatchObject({ type: 'plan-test-failover', state: 'waiting' });
      expect((o.tasks as Json[])[0]).toMatchObject({ name: 'group-1-pre-check', state: 'waiting', message: 'check: look at it' });
      expect((await rep('db')).testFailoverState).toBe('none'); // held back by the step
    }],
    [() => ['job', 'show', ctx.pj as string], (o) => expect(o).toMatchObject({ type: 'plan-test-failover', state: 'waiting' })],
    [() => ['job', 'list', '--state', 'waiting'], (o) => expect(o.items?.map((j) => j.id)).toEqual([ctx.pj])],
    [() => ['plan', 'reject', ctx.pj as string, '--comment', 'not yet'], async (o) => {
      expect(o.state).toBe('failed');
      expect((o.error as Json).message).toContain('not yet');
      expect((await rep('db')).testFailoverState).toBe('none');
    }],
    [() => ['job', 'restart', ctx.pj as string], async (o) => {
      expect(['queued', 'running', 'waiting']).toContain(o.state);
      await waitJob(ctx.pj as string, 'waiting'); // restarted, the step asks again
    }],
    [() => ['plan', 'approve', ctx.pj as string, '--comment', 'looked'], async (o) => {
      expect(o.state).toBe('succeeded');
      expect((o.tasks as Json[])[0]?.input).toMatchObject({ approved: true, comment: 'looked' });
      for (const m of ['db', 'web']) expect((await rep(m)).testFailoverState).toBe('running');
    }],
    [() => ['plan', 'run', 'app-plan', 'test-failover-cleanup'], async (o) => {
      expect(o).toMatchObject({ type: 'plan-test-failover-cleanup', state: 'succeeded' });
      for (const m of ['db', 'web']) expect((await rep(m)).testFailoverState).toBe('none');
    }],
    [() => ['plan', 'run', 'app-plan', 'test-failover', '--no-wait'], async (o) => {
      ctx.pj2 = String(o.id);
      expect(o.type).toBe('plan-test-failover');
      await waitJob(ctx.pj2, 'waiting');
    }],
    [() => ['job', 'cancel', ctx.pj2 as string], async (o) => {
      expect(o.cancelRequested).toBe(true);
      await waitJob(ctx.pj2 as string, 'cancelled');
    }],
    [() => ['job', 'restart', ctx.pj2 as string], () => waitJob(ctx.pj2 as string, 'waiting')],
    [() => ['job', 'resume', ctx.pj2 as string, '--comment', 'go'], (o) => expect(['queued', 'running', 'succeeded']).toContain(o.state)],
    [() => ['job', 'watch', ctx.pj2 as string], (o) => {
      expect(o.state).toBe('succeeded');
      expect((o.tasks as Json[])[0]?.input).toMatchObject({ approved: true, comment: 'go' });
    }],
    [() => ['plan', 'run', 'app-plan', 'test-failover-cleanup'], (o) => expect(o.state).toBe('succeeded')],
    [() => ['plan', 'delete', 'app-plan'], (o) => expect(o).toEqual({ deleted: 'app-plan' })],
    // Drills: a test failover with a probe, cleaned up, its RTO measured.
    [() => ['drill', 'create', 'web-drill', '--replication', 'web', '--every', '1d', '--command', 'test -n "$REFUGE_MACHINE_MAP"'], (o) => expect(o).toMatchObject({ name: 'web-drill', replication: 'web', intervalSeconds: 86400, enabled: true, lastRun: null })],
    [() => ['drill', 'list'], (o) => expect(o.items?.map((d) => d.name)).toEqual(['web-drill'])],
    [() => ['drill', 'run', 'web-drill'], async (o) => {
      ctx.drillRun = String(o.id);
      expect(o).toMatchObject({ outcome: 'succeeded', cleanedUp: true, error: null });
      expect(o.rtoSeconds).toBeGreaterThan(0);
      expect((await rep('web')).testFailoverState).toBe('none');
    }],
    [() => ['drill', 'show', 'web-drill'], (o) => {
      expect(o.runs).toHaveLength(1);
      expect(o.lastSuccessfulRun).toMatchObject({ id: ctx.drillRun });
    }],
    [() => ['drill', 'pause', 'web-drill'], (o) => expect(o).toMatchObject({ name: 'web-drill', enabled: false })],
    [() => ['drill', 'unpause', 'web-drill'], (o) => expect(o).toMatchObject({ name: 'web-drill', enabled: true })],
    [() => ['drill', 'delete', 'web-drill'], async (o) => {
      expect(o).toEqual({ deleted: 'web-drill' });
      expect((await api<{ items: unknown[] }>('GET', '/vaults/demo/drills')).items).toEqual([]);
    }],
    // Resync and repair: the vault asks the agent to compare everything; the agent (played here) ships a point.
    [() => ['resync', 'web', '--no-wait'], (o) => {
      ctx.resync = String(o.id);
      expect(o.type).toBe('resync');
    }],
    [() => ['cancel', 'web'], async (o) => {
      expect(o).toMatchObject({ id: ctx.resync, cancelRequested: true });
      await waitJob(ctx.resync as string, 'cancelled');
      expect((await rep('web')).state).toBe('protected');
    }],
    [() => ['resync', 'web'], async (o) => {
      expect(o).toMatchObject({ type: 'resync', state: 'succeeded' });
      expect((await rep('web')).rpo?.latestPoint.id).toBe(ctx.shipped);
    }, () => ship('web', 'primary', (i) => i.resyncAfter !== undefined, 1)],
    [() => ['repair', 'web'], (o) => {
      expect(o).toMatchObject({ type: 'repair', state: 'succeeded' });
      expect((o.result as Json).droppedPoints).toEqual([{ id: ctx.lost, problem: 'not in the store' }]);
    }, () => ship('web', 'primary', (i) => i.resyncAfter !== undefined, 2), async () => {
      // The store loses web's newest point (the one the resync shipped): repair finds it and drops it.
      ctx.lost = ctx.shipped as string;
      const site = await server.repos.sites.get((await server.repos.vaults.get('demo')).id, 'recovery');
      await (await server.sites.store(site)).deletePoint((await rep('web')).id, ctx.lost);
    }],
    // Planned failover and back: db moves to recovery, is re-protected back to primary, and fails back home.
    [() => ['planned-failover', 'db', '--source-shut-down'], async (o) => {
      expect(o).toMatchObject({ type: 'planned-failover', state: 'succeeded', result: { pointId: ctx.shipped } });
      expect((await rep('db')).state).toBe('failed-over');
      expect(fabric('recovery').machines.get('db')?.disk0?.equals(content('db', 3))).toBe(true);
    }, () => ship('db', 'primary', (i) => i.cutAfter !== undefined, 3)],
    [() => ['change-recovery-point', 'db', '--point', ctx.dbFirst as string], (o) => {
      expect(o).toMatchObject({ type: 'change-recovery-point', state: 'succeeded', result: { pointId: ctx.dbFirst } });
      expect(fabric('recovery').machines.get('db')?.disk0?.equals(content('db', 0))).toBe(true);
    }],
    [() => ['commit', 'db'], async (o) => {
      expect(o.state).toBe('succeeded');
      expect((await rep('db')).allowedOperations).toEqual(['reprotect', 'disable']);
    }],
    [() => ['reprotect', 'db'], async (o) => {
      expect(o).toMatchObject({ type: 'reprotect', state: 'succeeded' });
      expect(await rep('db')).toMatchObject({ state: 'protected', reversed: true, sourceSite: 'recovery', targetSite: 'primary' });
    }, () => ship('db', 'recovery', (i) => i.mode === 'replicate', 4)],
    [() => ['failback', 'db'], async (o) => {
      expect(o).toMatchObject({ type: 'failback', state: 'succeeded', result: { pointId: ctx.shipped } });
      expect(fabric('primary').machines.get('db')?.disk0?.equals(content('db', 5))).toBe(true);
      expect(await rep('db')).toMatchObject({ state: 'failed-over', reversed: true });
    }, () => ship('db', 'recovery', (i) => i.cutAfter !== undefined, 5)],
    [() => ['failover', 'web', '--point', 'latest'], async (o) => {
      expect(o).toMatchObject({ type: 'failover', state: 'succeeded' });
      expect((o.result as Json).pointId).toBe((await rep('web')).failover?.failover?.pointId);
      expect(fabric('recovery').machines.get('web')?.disk0?.equals(content('web', 2))).toBe(true); // the point the repair's resync shipped
    }],
    [() => ['disable', 'app'], (o) => expect(o.state).toBe('succeeded')],
    [() => ['machine', 'delete', 'app'], (o) => expect(o).toEqual({ deleted: 'app' })],
    [() => ['replicators'], (o) => expect(o.items).toEqual([])],
    // Registration: a one-time key written to a file, redeemed by `agent register` for a certificate in a state folder.
    [() => ['agent', 'key', 'create', '--write', join(dir, 'registration.json')], async (o) => {
      expect(o).toMatchObject({ vault: 'demo', file: join(dir, 'registration.json') });
      const file = JSON.parse(await readFile(join(dir, 'registration.json'), 'utf8')) as Json;
      expect(file).toMatchObject({ url: server.url, vault: 'demo', caFingerprint256: o.caFingerprint256 });
      expect(String(file.registrationKey)).not.toBe('');
    }],
    [() => ['agent', 'register', '--credentials', join(dir, 'registration.json'), '--site', 'primary', '--name', 'edge', '--state-dir', join(dir, 'edge-agent')], async (o) => {
      expect(o).toMatchObject({ vault: 'demo', url: server.url, machine: 'edge', site: 'primary', stateDir: join(dir, 'edge-agent') });
      expect(new Date(String(o.notAfter)).getTime()).toBeGreaterThan(Date.now());
      const identity = await loadIdentity(join(dir, 'edge-agent'));
      expect(identity).toMatchObject({ kind: 'machine', name: 'edge', site: 'primary', vault: 'demo', notAfter: o.notAfter });
      expect(new X509Certificate(identity?.connection.cert ?? '').subject).toContain('machine:edge');
    }],
    [() => ['config', 'set', 'vault', 'demo'], (o) => expect(o.settings).toEqual({ vault: 'demo' })],
    [() => ['config', 'show'], (o) => expect(o.effective).toMatchObject({ vault: 'demo', output: 'json' })],
    [() => ['config', 'unset', 'vault'], (o) => expect(o.settings).toEqual({})],
    // The replica store directly, without the vault.
    [() => ['store', 'init', '--path', join(dir, 'store')], (o) => expect(o.chunkSize).toBeGreaterThan(0)],
    [() => ['store', 'import', '--path', join(dir, 'store'), '--replication', 'r1', '--disk', `disk0=${join(dir, 'image.raw')}`], (o) => {
      ctx.imported = String(o.point);
      expect(o.changedBytes).toBe(1024 * 1024);
    }],
    [() => ['store', 'points', '--path', join(dir, 'store'), '--replication', 'r1'], (o) => expect(o.items?.map((p) => p.id)).toEqual([ctx.imported])],
    [() => ['store', 'restore', '--path', join(dir, 'store'), '--replication', 'r1', '--point', 'latest', '--disk', 'disk0', '--out', join(dir, 'restored.raw')], (o) => expect(o.out).toBe(join(dir, 'restored.raw'))],
    [() => ['store', 'diff', '--path', join(dir, 'store'), '--replication', 'r1', '--from', ctx.imported as string], (o) => expect(o.from).toBe(ctx.imported)],
    [() => ['store', 'verify', '--path', join(dir, 'store')], (o) => expect(o.problems).toEqual([])],
    [() => ['store', 'prune', '--path', join(dir, 'store'), '--replication', 'r1', '--retention', '24h', '--dry-run'], (o) => expect(o.kept).toHaveLength(1)],
    [() => ['store', 'gc', '--path', join(dir, 'store'), '--dry-run'], (o) => expect(o.points).toBe(1)],
    [() => ['store', 'stats', '--path', join(dir, 'store')], (o) => expect(o).toBeTypeOf('object')],
    [() => ['store', 'repair', '--path', join(dir, 'store')], (o) => {
      // Damaged before it ran: one byte of one of the store's packs (below); its blobs are kept or lost, none left damaged.
      expect((o.found as Json[]).map((p) => String(p.object).split('/')[0])).toContain('packs');
      expect(o.packsRewritten).toBe(1);
      expect(Number(o.blobsKept) + (o.lost as unknown[]).length).toBeGreaterThan(0);
    }, undefined, () => damageOnePack(join(dir, 'store'))],
  ];
  /** The leaf command an argument list runs: the longest leaf path its first words spell (after global options). */
  const key = (args: string[]) => {
    const words = args[0] === '--vault' ? args.slice(2) : args;
    return leafPaths(buildProgram()).sort((a, b) => b.length - a.length).find((p) => words.slice(0, p.split(' ').length).join(' ') === p);
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'refuge-cli-json-'));
    const init = await initVault({ dataDir: join(dir, 'vault'), certificate: testCertificate() });
    credentials = init.credentialsPath;
    Object.assign(ctx, { token: init.credentials.token, ca: init.credentials.ca, hook: (await hook).url });
    server = await startVaultServer({ dataDir: join(dir, 'vault'), port: 0, log: silentLogger, fabricFor: (site) => fabric(site.name), monitorIntervalMs: 0 });
    const v = { url: server.url, connection: { token: ctx.token, ca: ctx.ca }, api } as unknown as VaultProcess;
    seeded = (await seedReplications(v, ['web', 'db'])).disks;
    ctx.dbFirst = String((await api<{ items: { id: string }[] }>('GET', '/vaults/demo/replications/db/points')).items[0]?.id);
    await api('POST', '/vaults/demo/agents/register', { site: 'primary', agentVersion: '0.1.0', machine: { name: 'app', hostname: 'app', os: 'linux', cpus: 1, memoryMiB: 64, disks: [{ name: 'disk0', sizeBytes: 1048576 }], boot: { kind: 'disk' } } });
    const demo = (await server.repos.vaults.get('demo')).id;
    await server.monitoring.alerts.raise(demo, { kind: 'rpo-over-threshold', subject: 'web', severity: 'warning', message: 'RPO 20 min is above the threshold of 15 min' });
    await writeFile(join(dir, 'plan.json'), JSON.stringify({ description: 'one group', groups: [{ name: 'data', replications: ['db'], post: [{ name: 'check', kind: 'manual', target: 'look at it' }] }] }));
    await writeFile(join(dir, 'plan2.json'), JSON.stringify({ description: 'two groups', groups: [{ name: 'data', replications: ['db'], pre: [{ name: 'check', kind: 'manual', target: 'look at it' }] }, { name: 'front', replications: ['web'] }] }));
    const image = Buffer.alloc(4 * 1024 * 1024);
    image.fill(7, 1024 * 1024, 2 * 1024 * 1024);
    await writeFile(join(dir, 'image.raw'), image);
    Object.assign(process.env, { REFUGE_CONFIG: join(dir, 'login.json'), REFUGE_CONFIG_FILE: join(dir, 'config.json'), REFUGE_PASSWORD: 'a-long-password-1' });
    await api('PATCH', '/users/admin', { password: 'a-long-password-1' });
  });
  afterAll(async () => {
    for (const k of ['REFUGE_CONFIG', 'REFUGE_CONFIG_FILE', 'REFUGE_PASSWORD']) delete process.env[k];
    await server?.close();
    await (await hook).close();
    await rm(dir, { recursive: true, force: true });
  });

  it('covers every leaf command of the program, or says why not', () => {
    const leaves = leafPaths(buildProgram());
    const covered = new Set(CASES.map(([args]) => key(args())));
    const missing = leaves.filter((l) => !covered.has(l) && !(l in NOT_RUN));
    expect(missing).toEqual([]);
    expect(Object.keys(NOT_RUN).filter((l) => !leaves.includes(l))).toEqual([]); // no stale reasons
  });

  it('prints one JSON document, with the right data, from every command', async () => {
    for (const [args, check, beside, before] of CASES) {
      await before?.();
      const argv = args();
      const [r] = await Promise.all([runCli(['--url', server.url, '--credentials', credentials, '--json', ...argv]), beside?.()]);
      expect(r.stderr, argv.join(' ')).toBe('');
      expect([0, 3], `${argv.join(' ')} exit code`).toContain(r.code); // 3: a readiness check failed
      let parsed: Json;
      try {
        parsed = JSON.parse(r.stdout) as Json;
      } catch {
        throw new Error(`refuge ${argv.join(' ')} --json printed no single JSON document:\n${r.stdout}`);
      }
      await check(parsed);
    }
  });

  it('completes commands in bash from the same command tree', async () => {
    const r = await runCli(['completion', 'bash']);
    const script = join(dir, 'completion.bash');
    await writeFile(script, r.stdout);
    const { execFileSync } = await import('node:child_process');
    const complete = (...words: string[]) =>
      execFileSync('bash', ['-c', `source ${script}; COMP_WORDS=(refuge ${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length}; _refuge_complete; echo "\${COMPREPLY[@]}"`]).toString().trim();
    expect(complete('net')).toBe('network-mapping');
    expect(complete('--json', 'job', 're')).toBe('restart resume');
    expect(complete('plan', '')).toContain('create');
  });
});

/** The command paths of the program's leaves (commands without subcommands), e.g. 'job resume'. */
function leafPaths(cmd: Command, path: string[] = []): string[] {
  const subs = cmd.commands.filter((c) => c.name() !== 'help');
  if (subs.length === 0) return [path.join(' ')];
  return subs.flatMap((c) => leafPaths(c, [...path, c.name()]));
}

/** Flips one byte in the middle of the first pack file of the store at `path`, as a failing disk would. */
async function damageOnePack(path: string): Promise<void> {
  const files = (await readdir(join(path, 'packs'), { recursive: true, withFileTypes: true })).filter((f) => f.isFile());
  const file = files[0];
  if (!file) throw new Error(`no pack in ${path}`);
  const at = join(file.parentPath, file.name);
  const bytes = await readFile(at);
  const middle = bytes.length >> 1;
  bytes.writeUInt8((bytes.readUInt8(middle) ^ 0xff), middle);
  await writeFile(at, bytes);
}
