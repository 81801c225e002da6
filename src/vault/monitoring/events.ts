import type { Kysely } from 'kysely';
import { newId } from '../../core/ids.js';
import type { Database } from '../db/schema.js';

export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];
export const severityRank = (s: Severity): number => SEVERITIES.indexOf(s);

export interface VaultEvent {
  id: string;
  vaultId: string;
  at: string;
  /** Dotted kind, e.g. `job.failed`, `alert.raised`, `replication.enabled`, `readiness.worsened`. */
  type: string;
  severity: Severity;
  subject: string | null;
  message: string;
  details: Record<string, unknown>;
}

export interface EventFilter {
  type?: string;
  severity?: Severity;
  subject?: string;
  since?: string;
  limit?: number;
  /** Newest first; the previous page's last id. */
  before?: string;
}

/** What happened in a vault, kept (default 30 days) and queryable. Append-only apart from pruning. */
export class EventRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async record(e: Omit<VaultEvent, 'id' | 'at'>): Promise<VaultEvent> {
    const event: VaultEvent = { id: newId('evt'), at: new Date().toISOString(), ...e };
    const { details, ...rest } = event;
    await this.db.insertInto('events').values({ ...rest, detailsJson: JSON.stringify(details) }).execute();
    return event;
  }

  async list(vaultId: string, f: EventFilter = {}): Promise<VaultEvent[]> {
    let q = this.db.selectFrom('events').selectAll().where('vaultId', '=', vaultId);
    if (f.type) q = q.where('type', '=', f.type);
    if (f.severity) q = q.where('severity', '=', f.severity);
    if (f.subject) q = q.where('subject', '=', f.subject);
    if (f.since) q = q.where('at', '>=', f.since);
    if (f.before) q = q.where('id', '<', f.before);
    const rows = await q.orderBy('id', 'desc').limit(f.limit ?? 100).execute();
    return rows.map(({ detailsJson, ...r }) => ({ ...r, severity: r.severity as Severity, details: JSON.parse(detailsJson) as Record<string, unknown> }));
  }

  async prune(olderThan: string): Promise<number> {
    const r = await this.db.deleteFrom('events').where('at', '<', olderThan).executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
