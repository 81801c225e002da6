import type { Kysely } from 'kysely';
import { RefugeError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/log.js';
import type { Database } from '../db/schema.js';
import type { AlertChannelConfig } from './alerts.js';
import type { AlertKind, AlertNotice, NotificationChannel } from './channels/channel.js';
import { SmtpChannel, type SmtpConfig } from './channels/smtp.js';
import { WebhookChannel, type WebhookConfig } from './channels/webhook.js';
import type { Severity } from './events.js';

/** The channel a stored configuration describes. */
export function channelFor(c: Pick<AlertChannelConfig, 'kind' | 'config'>): NotificationChannel {
  if (c.kind === 'webhook') return new WebhookChannel(c.config as unknown as WebhookConfig);
  return new SmtpChannel(c.config as unknown as SmtpConfig);
}

const MAX_ATTEMPTS = 8;
/** Waits before the next attempt: 5 s, 10 s, 20 s, ... capped at 10 minutes. */
const backoffMs = (attempts: number) => Math.min(600_000, 5000 * 2 ** (attempts - 1));
/** A claim on a notification lasts this long; a process that dies while sending leaves it to another after. */
const CLAIM_MS = 60_000;

/**
 * Delivers queued notifications (an outbox in the database), at least once, with retries and backoff. Several
 * vault processes may run one each: a notification is claimed by moving its next attempt into the future with a
 * compare-and-set, so only one process sends it at a time.
 */
export class Notifier {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly o: { log?: Logger; intervalMs?: number; channelFor?: typeof channelFor } = {},
  ) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), this.o.intervalMs ?? 2000);
    this.timer.unref();
  }

  kick(): void {
    this.running ??= this.deliverDue()
      .then(() => undefined)
      .catch((err: unknown) => (this.o.log ?? silentLogger).error({ err }, 'delivering notifications failed'))
      .finally(() => (this.running = undefined));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.abort.abort(new RefugeError('unavailable', 'vault is shutting down'));
    await this.running;
  }

  /** Sends every notification that is due now; returns how many were delivered (tests call it directly). */
  async deliverDue(): Promise<number> {
    let delivered = 0;
    for (;;) {
      const now = new Date().toISOString();
      const due = await this.db.selectFrom('notifications').selectAll().where('state', '=', 'pending').where('nextAttemptAt', '<=', now).orderBy('createdAt').limit(20).execute();
      if (due.length === 0 || this.abort.signal.aborted) return delivered;
      for (const n of due) {
        const claimed = await this.db
          .updateTable('notifications')
          .set({ nextAttemptAt: new Date(Date.now() + CLAIM_MS).toISOString() })
          .where('id', '=', n.id)
          .where('state', '=', 'pending')
          .where('nextAttemptAt', '=', n.nextAttemptAt)
          .executeTakeFirst();
        if (Number(claimed.numUpdatedRows) !== 1) continue;
        if (await this.deliver(n)) delivered++;
      }
    }
  }

  private async deliver(n: { id: string; alertId: string; channelId: string; transition: string; attempts: number }): Promise<boolean> {
    const log = this.o.log ?? silentLogger;
    const alert = await this.db.selectFrom('alerts').innerJoin('vaults', 'vaults.id', 'alerts.vaultId').selectAll('alerts').select('vaults.name as vaultName').where('alerts.id', '=', n.alertId).executeTakeFirst();
    const channel = await this.db.selectFrom('alertChannels').selectAll().where('id', '=', n.channelId).executeTakeFirst();
    if (!alert || !channel) {
      await this.db.updateTable('notifications').set({ state: 'dropped', lastError: 'alert or channel no longer exists' }).where('id', '=', n.id).execute();
      return false;
    }
    const notice: AlertNotice = {
      id: `${alert.id}:${n.transition}`,
      transition: n.transition as AlertNotice['transition'],
      vault: alert.vaultName,
      alert: { id: alert.id, kind: alert.kind as AlertKind, subject: alert.subject, severity: alert.severity as Severity, message: alert.message, firstAt: alert.firstAt, resolvedAt: alert.resolvedAt },
    };
    const attempts = n.attempts + 1;
    try {
      const config = { kind: channel.kind as AlertChannelConfig['kind'], config: JSON.parse(channel.configJson) as Record<string, unknown> };
      await (this.o.channelFor ?? channelFor)(config).send(notice, this.abort.signal);
      await this.db.updateTable('notifications').set({ state: 'sent', attempts, sentAt: new Date().toISOString(), lastError: null }).where('id', '=', n.id).execute();
      return true;
    } catch (err) {
      const retry = !(err instanceof RefugeError) || err.retryable;
      const giveUp = !retry || attempts >= MAX_ATTEMPTS;
      log.warn({ err, channel: channel.name, alert: alert.id, attempts }, giveUp ? 'notification failed for good' : 'notification failed; will retry');
      await this.db
        .updateTable('notifications')
        .set({ state: giveUp ? 'failed' : 'pending', attempts, lastError: (err as Error).message, nextAttemptAt: new Date(Date.now() + backoffMs(attempts)).toISOString() })
        .where('id', '=', n.id)
        .execute();
      return false;
    }
  }
}
