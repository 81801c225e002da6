import { RefugeError } from '../../../core/errors.js';
import { noticeSubject, type AlertNotice, type NotificationChannel } from './channel.js';

export interface SmtpConfig {
  host: string;
  port: number;
  /** TLS from the first byte (port 465); otherwise STARTTLS is used when the server offers it. */
  secure?: boolean;
  /** Refuse to send without TLS. */
  requireTls?: boolean;
  user?: string;
  password?: string;
  from: string;
  to: string[];
  /** PEM of a CA to trust for the server's certificate. */
  ca?: string;
}

/** Sends each notice as a plain-text email to the configured recipients. */
export class SmtpChannel implements NotificationChannel {
  readonly kind = 'smtp';
  constructor(private readonly config: SmtpConfig) {}

  async send(notice: AlertNotice, signal: AbortSignal): Promise<void> {
    const c = this.config;
    // Loaded on the first email, not at vault start: a vault without an SMTP channel need not carry it in memory.
    const { default: nodemailer } = await import('nodemailer');
    const transport = nodemailer.createTransport({
      host: c.host,
      port: c.port,
      secure: c.secure === true,
      requireTLS: c.requireTls === true,
      ...(c.user ? { auth: { user: c.user, pass: c.password ?? '' } } : {}),
      tls: c.ca ? { ca: c.ca } : {},
      connectionTimeout: 15_000,
      socketTimeout: 15_000,
    });
    const onAbort = () => transport.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      signal.throwIfAborted();
      const a = notice.alert;
      await transport.sendMail({
        from: c.from,
        to: c.to,
        subject: noticeSubject(notice),
        headers: { 'X-Refuge-Notice': notice.id },
        text: [
          noticeSubject(notice),
          '',
          `vault:     ${notice.vault}`,
          `alert:     ${a.kind} (${a.id})`,
          `subject:   ${a.subject}`,
          `severity:  ${a.severity}`,
          `state:     ${notice.transition}`,
          `since:     ${a.firstAt}`,
          ...(a.resolvedAt ? [`resolved:  ${a.resolvedAt}`] : []),
          '',
          a.message,
        ].join('\n'),
      });
      signal.throwIfAborted();
    } catch (err) {
      const code = (err as { responseCode?: number }).responseCode;
      throw new RefugeError('unavailable', `SMTP server ${c.host}:${c.port} did not accept the notice: ${(err as Error).message.replaceAll(c.password ?? '\u0000', '***')}`, {
        cause: err,
        retryable: code === undefined || code < 500,
      });
    } finally {
      signal.removeEventListener('abort', onAbort);
      transport.close();
    }
  }
}
