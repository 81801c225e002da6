import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertNotice, NotificationChannel } from '../../../src/vault/monitoring/channels/channel.js';
import { SmtpChannel } from '../../../src/vault/monitoring/channels/smtp.js';
import { WebhookChannel } from '../../../src/vault/monitoring/channels/webhook.js';
import { startSmtpReceiver, startWebhookReceiver } from '../../helpers/receivers.js';

const notice = (n: number): AlertNotice => ({
  id: `alert_${n}:raised`,
  transition: 'raised',
  vault: 'demo',
  alert: { id: `alert_${n}`, kind: 'agent-heartbeat-lost', subject: 'web', severity: 'critical', message: `no heartbeat from the agent of 'web' for ${n} s`, firstAt: '2026-01-01T00:00:00.000Z', resolvedAt: null },
});

interface Harness {
  channel(): NotificationChannel;
  /** The notices the real receiver accepted, as text. */
  received(): string[];
  down(): NotificationChannel;
  refusePermanently(): void;
  secret: string;
  close(): Promise<void>;
}

const harnesses: Record<string, () => Promise<Harness>> = {
  async webhook() {
    const r = await startWebhookReceiver();
    const secret = 'webhook-signing-secret';
    return {
      secret,
      channel: () => new WebhookChannel({ url: r.url, secret }),
      received: () => r.received.map((x) => `${String(x.headers['x-refuge-notice'])} ${String(x.headers['x-refuge-signature']).slice(0, 7)} ${JSON.stringify(x.body)}`),
      down: () => new WebhookChannel({ url: 'http://127.0.0.1:9/hook', secret }),
      refusePermanently: () => r.answer(400),
      close: r.close,
    };
  },
  async smtp() {
    const secret = 'smtp-password-42';
    const r = await startSmtpReceiver({ user: 'refuge', password: secret });
    const config = { host: r.host, port: r.port, user: 'refuge', password: secret, from: 'refuge@example.test', to: ['oncall@example.test'] };
    return {
      secret,
      channel: () => new SmtpChannel(config),
      // Undo the mail encodings (folded headers, quoted-printable body) to compare text.
      received: () => r.messages.map((m) => `${m.to.join(',')} ${m.data.replace(/\r?\n[ \t]+/g, ' ').replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16)))}`),
      down: () => new SmtpChannel({ ...config, port: 9 }),
      refusePermanently: () => r.refuse(554, 'rejected by policy'),
      close: r.close,
    };
  },
};

/** The notification channel contract (channel.ts), one body against every kind with a real receiver. */
describe.each(Object.keys(harnesses))('notification channel %s', (kind) => {
  let h: Harness;
  beforeAll(async () => {
    h = await (harnesses[kind] as () => Promise<Harness>)();
  });
  afterAll(async () => h.close());

  it('delivers a notice the receiver accepts, with its subject line, details and stable id', async () => {
    await h.channel().send(notice(1), AbortSignal.timeout(10_000));
    const got = h.received();
    expect(got).toHaveLength(1);
    expect(got[0]).toContain('[refuge demo] CRITICAL agent-heartbeat-lost web');
    expect(got[0]).toContain("no heartbeat from the agent of 'web' for 1 s");
    expect(got[0]).toContain('alert_1:raised');
    if (kind === 'webhook') expect(got[0]).toContain(' sha256=');
    if (kind === 'smtp') expect(got[0]).toContain('oncall@example.test');
  });

  it('fails retryably when the receiver is down, without the secret in the error', async () => {
    const err = (await h.down().send(notice(2), AbortSignal.timeout(10_000)).catch((e: unknown) => e)) as { code: string; retryable: boolean; message: string };
    expect(err.code).toBe('unavailable');
    expect(err.retryable).toBe(true);
    expect(err.message).not.toContain(h.secret);
  });

  it('rejects promptly when aborted', async () => {
    const ac = new AbortController();
    ac.abort(new Error('shutting down'));
    await expect(h.channel().send(notice(3), ac.signal)).rejects.toBeDefined();
  });

  it('fails for good (not retryable) when the receiver refuses the notice', async () => {
    h.refusePermanently();
    const err = (await h.channel().send(notice(4), AbortSignal.timeout(10_000)).catch((e: unknown) => e)) as { retryable: boolean; message: string };
    expect(err.retryable).toBe(false);
    expect(err.message).not.toContain(h.secret);
  });
});
