import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobView } from '../../../src/vault/jobs/definitions.js';
import { Monitor } from '../../../src/vault/monitoring/monitor.js';
import { certificateFacts, createCa, issueCertificate } from '../../../src/vault/security/pki.js';
import { TEST_DATABASES } from '../../helpers/databases.js';
import { startSmtpReceiver, startWebhookReceiver } from '../../helpers/receivers.js';
import { createTestVault, protectWithPoint, seedConfiguration, type TestVault } from '../../helpers/test-vault.js';

type Alert = { id: string; kind: string; subject: string; severity: string; state: string; message: string };

/**
 * Alerts from real conditions, delivered over a real webhook receiver and a real SMTP server: a failed failover,
 * RPO over the policy's threshold, no point for an hour, a lost agent, an expiring certificate; resolved when the
 * condition clears. Events record each.
 */
describe.each(TEST_DATABASES)('alerts and their delivery on %s', (database) => {
  let v: TestVault;
  let webhook: Awaited<ReturnType<typeof startWebhookReceiver>>;
  let smtp: Awaited<ReturnType<typeof startSmtpReceiver>>;
  beforeEach(async () => {
    v = await createTestVault(database);
    webhook = await startWebhookReceiver();
    smtp = await startSmtpReceiver();
    await seedConfiguration(v);
    await protectWithPoint(v);
    expect((await v.call('POST', '/api/v1/vaults/demo/alert-channels', { name: 'hook', kind: 'webhook', minSeverity: 'warning', config: { url: webhook.url, secret: 's3cret-signing' } })).status).toBe(201);
    expect((await v.call('POST', '/api/v1/vaults/demo/alert-channels', { name: 'mail', kind: 'smtp', minSeverity: 'critical', config: { host: smtp.host, port: smtp.port, from: 'refuge@example.test', to: ['oncall@example.test'] } })).status).toBe(201);
  });
  afterEach(async () => {
    await v.cleanup();
    await webhook.close();
    await smtp.close();
  });

  const alerts = async (q = '') => (await v.call<{ items: Alert[] }>('GET', `/api/v1/vaults/demo/alerts${q}`)).body.items;
  const deliver = () => v.monitoring.notifier.deliverDue();
  const hooked = () => webhook.received.map((r) => (r.body as { transition: string; alert: Alert }));

  it('a failed failover raises a critical job-failed alert, sent by webhook and email; events record it', async () => {
    v.fabric.failStart = true;
    const r = await v.call<JobView>('POST', '/api/v1/vaults/demo/replications/vm1/failover', {});
    await v.engine.waitFor(r.body.id);
    const [alert] = await alerts('?state=active');
    expect(alert).toMatchObject({ kind: 'job-failed', subject: 'failover vm1', severity: 'critical' });
    expect(alert?.message).toContain('fake fabric refuses');
    expect(await deliver()).toBe(2);
    expect(hooked()).toMatchObject([{ transition: 'raised', alert: { kind: 'job-failed', subject: 'failover vm1' } }]);
    expect(smtp.messages).toHaveLength(1);
    expect(smtp.messages[0]?.data).toContain('CRITICAL job-failed failover vm1');
    expect(await deliver()).toBe(0); // delivered once
    const events = (await v.call<{ items: { type: string }[] }>('GET', '/api/v1/vaults/demo/events')).body.items.map((e) => e.type);
    expect(events).toEqual(expect.arrayContaining(['job.failed', 'alert.raised']));
    // The channel list never shows the webhook's secret.
    const channels = await v.call<{ items: { config: Record<string, unknown> }[] }>('GET', '/api/v1/vaults/demo/alert-channels');
    expect(JSON.stringify(channels.body)).not.toContain('s3cret-signing');
  });

  it('health alerts follow RPO and heartbeats: raised when they worsen, resolved when they clear, each transition delivered', async () => {
    const monitor = v.monitoring.monitor;
    const inMinutes = (m: number) => new Date(Date.now() + m * 60_000);
    await monitor.evaluate(new Date());
    expect(await alerts('?state=active')).toEqual([]);

    // 16 minutes without a point: over the policy's default 15-minute RPO threshold; the agent's heartbeat is gone too.
    await monitor.evaluate(inMinutes(16));
    expect((await alerts('?state=active')).map((a) => [a.kind, a.severity]).sort()).toEqual([
      ['agent-heartbeat-lost', 'critical'],
      ['rpo-over-threshold', 'warning'],
    ]);
    // 61 minutes: no point for an hour (critical) replaces the RPO warning.
    await monitor.evaluate(inMinutes(61));
    const active = await alerts('?state=active');
    expect(active.map((a) => a.kind).sort()).toEqual(['agent-heartbeat-lost', 'no-recent-point']);
    expect((await alerts('?state=resolved')).map((a) => a.kind)).toEqual(['rpo-over-threshold']);
    await monitor.evaluate(inMinutes(62)); // still the same: nothing new
    expect(await alerts('?state=active')).toHaveLength(2);

    await deliver();
    // The webhook (warning and up) saw every transition; email (critical only) the two critical ones raised.
    expect(hooked().map((b) => `${b.transition} ${b.alert.kind}`).sort()).toEqual([
      'raised agent-heartbeat-lost',
      'raised no-recent-point',
      'raised rpo-over-threshold',
      'resolved rpo-over-threshold',
    ]);
    expect(smtp.messages.map((m) => /CRITICAL (\S+)/.exec(m.data)?.[1]).sort()).toEqual(['agent-heartbeat-lost', 'no-recent-point']);

    // Back to now (fresh point and heartbeat): everything resolves.
    await monitor.evaluate(new Date());
    expect(await alerts('?state=active')).toEqual([]);
  });

  it('a vault certificate expiring within 30 days raises certificate-expiring', async () => {
    const ca = createCa('expiring CA');
    const soon = certificateFacts(issueCertificate(ca, { commonName: 'vault', usage: 'server', days: 10 }).certPem);
    const monitor = new Monitor({ repos: v.repos, alerts: v.monitoring.alerts, events: v.monitoring.events, certificate: () => soon });
    await monitor.evaluate();
    const [alert] = await alerts('?kind=certificate-expiring');
    expect(alert).toMatchObject({ subject: 'vault-server', severity: 'warning', state: 'active' });
    expect(alert?.message).toMatch(/expires in (9|10) days/);
  });
});
