import { createHmac } from 'node:crypto';
import { RefugeError } from '../../../core/errors.js';
import { requestJson } from '../../../core/http-client.js';
import { noticeSubject, type AlertNotice, type NotificationChannel } from './channel.js';

export interface WebhookConfig {
  url: string;
  /** When set, every request carries `x-refuge-signature: sha256=<HMAC-SHA256 of the body>`. */
  secret?: string;
  /** PEM of a CA to trust for an https URL signed by a private CA. */
  ca?: string;
}

/** POSTs each notice as JSON (`{ id, transition, vault, alert, text }`) to a URL; 2xx means delivered. */
export class WebhookChannel implements NotificationChannel {
  readonly kind = 'webhook';
  constructor(private readonly config: WebhookConfig) {}

  async send(notice: AlertNotice, signal: AbortSignal): Promise<void> {
    const body = { ...notice, text: noticeSubject(notice) };
    const headers: Record<string, string> = { 'x-refuge-notice': notice.id };
    if (this.config.secret) headers['x-refuge-signature'] = `sha256=${createHmac('sha256', this.config.secret).update(JSON.stringify(body)).digest('hex')}`;
    try {
      await requestJson('POST', this.config.url, { body, headers, signal, timeoutMs: 15_000, ...(this.config.ca ? { connection: { ca: this.config.ca } } : {}) });
    } catch (err) {
      const status = (err as RefugeError).details?.status as number | undefined;
      throw new RefugeError('unavailable', `webhook ${new URL(this.config.url).origin} did not accept the notice: ${(err as Error).message}`, {
        cause: err,
        retryable: status === undefined || status >= 500 || status === 429 || status === 408,
      });
    }
  }
}
