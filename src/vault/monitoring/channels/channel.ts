import type { Severity } from '../events.js';

export const ALERT_KINDS = [
  'rpo-over-threshold',
  'no-recent-point',
  'agent-heartbeat-lost',
  'job-failed',
  'certificate-expiring',
  'capacity-shortfall',
  'readiness-worsened',
  'replica-store-full',
  'replica-store-mismatch',
  'agent-outdated',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/** What a channel is asked to deliver: an alert that was raised, or one that was resolved. */
export interface AlertNotice {
  /** Stable per alert and transition: receivers use it to drop duplicates (deliveries are at least once). */
  id: string;
  transition: 'raised' | 'resolved';
  vault: string;
  alert: {
    id: string;
    kind: AlertKind;
    subject: string;
    severity: Severity;
    message: string;
    firstAt: string;
    resolvedAt: string | null;
  };
}

export const CHANNEL_KINDS = ['webhook', 'smtp'] as const;
export type ChannelKind = (typeof CHANNEL_KINDS)[number];

/**
 * A way to tell people about alerts. Contract, checked by one shared suite against every kind with a real receiver
 * (test/unit/vault/notification-channels.test.ts):
 * - `send` resolves only once the receiver accepted the notice, and rejects otherwise with a RefugeError whose
 *   `retryable` says whether trying again later may help (receiver down: yes; refused as malformed: no);
 * - it honours `signal` (aborted: rejects promptly, nothing half-sent is reported as sent);
 * - the same notice may be sent more than once (after a crash or a retry); it always carries the same `id`;
 * - nothing secret of the channel's configuration (passwords, webhook secrets) appears in errors.
 */
export interface NotificationChannel {
  readonly kind: ChannelKind;
  send(notice: AlertNotice, signal: AbortSignal): Promise<void>;
}

/** The one-line subject every channel uses, e.g. `[refuge demo] CRITICAL agent-heartbeat-lost web: ...`. */
export function noticeSubject(n: AlertNotice): string {
  const what = n.transition === 'resolved' ? 'RESOLVED' : n.alert.severity.toUpperCase();
  return `[refuge ${n.vault}] ${what} ${n.alert.kind} ${n.alert.subject}: ${n.alert.message}`;
}
