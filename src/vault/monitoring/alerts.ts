import type { Kysely } from 'kysely';
import { notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Database } from '../db/schema.js';
import { insertUnique, paged, type Page } from '../repositories/common.js';
import type { AlertKind, ChannelKind } from './channels/channel.js';
import { severityRank, type EventRepository, type Severity } from './events.js';

export interface Alert {
  id: string;
  vaultId: string;
  kind: AlertKind;
  /** What it is about: a replication, machine, job, site or certificate name. */
  subject: string;
  severity: Severity;
  state: 'active' | 'resolved';
  message: string;
  firstAt: string;
  lastAt: string;
  resolvedAt: string | null;
  details: Record<string, unknown>;
}

export interface AlertChannelConfig {
  id: string;
  vaultId: string;
  name: string;
  kind: ChannelKind;
  config: Record<string, unknown>;
  /** Only alerts at least this severe are sent. */
  minSeverity: Severity;
  createdAt: string;
}

type AlertRow = Omit<Alert, 'details'> & { detailsJson: string; activeKey: string | null };
const toAlert = ({ detailsJson, activeKey: _k, ...r }: AlertRow): Alert => ({ ...r, details: JSON.parse(detailsJson) as Record<string, unknown> });

/**
 * Alerts: at most one active alert per vault, kind and subject. Raising an active alert again only refreshes it;
 * raising a new one or resolving one queues a notification for every channel that wants its severity (sent by
 * the Notifier) and records an event, in one transaction.
 */
export class AlertRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly events: EventRepository,
  ) {}

  async raise(vaultId: string, a: { kind: AlertKind; subject: string; severity: Severity; message: string; details?: Record<string, unknown> }): Promise<{ alert: Alert; raised: boolean }> {
    const now = new Date().toISOString();
    const activeKey = `${a.kind}:${a.subject}`;
    const row = { id: newId('alert'), vaultId, kind: a.kind, subject: a.subject, severity: a.severity, state: 'active', message: a.message, activeKey, firstAt: now, lastAt: now, resolvedAt: null, detailsJson: JSON.stringify(a.details ?? {}) };
    const raised = await this.db.transaction().execute(async (trx) => {
      const r = await trx.insertInto('alerts').values(row).onConflict((oc) => oc.columns(['vaultId', 'activeKey']).doNothing()).executeTakeFirst();
      if (Number(r.numInsertedOrUpdatedRows ?? 0) === 0) {
        await trx.updateTable('alerts').set({ lastAt: now, message: a.message, severity: a.severity, detailsJson: row.detailsJson }).where('vaultId', '=', vaultId).where('activeKey', '=', activeKey).execute();
        return false;
      }
      await this.enqueue(trx, vaultId, row.id, 'raised', a.severity);
      return true;
    });
    const alert = toAlert((await this.db.selectFrom('alerts').selectAll().where('vaultId', '=', vaultId).where('activeKey', '=', activeKey).executeTakeFirstOrThrow()) as AlertRow);
    if (raised) await this.events.record({ vaultId, type: 'alert.raised', severity: a.severity, subject: a.subject, message: `${a.kind}: ${a.message}`, details: { alertId: alert.id, kind: a.kind } });
    return { alert, raised };
  }

  /** Resolves the active alert of this kind and subject, if there is one. */
  async resolve(vaultId: string, kind: AlertKind, subject: string): Promise<Alert | undefined> {
    const now = new Date().toISOString();
    const activeKey = `${kind}:${subject}`;
    // Most calls find nothing to resolve (the monitor's passes, every agent heartbeat): one read, no transaction.
    if (!(await this.db.selectFrom('alerts').select('id').where('vaultId', '=', vaultId).where('activeKey', '=', activeKey).executeTakeFirst())) return undefined;
    const resolved = await this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('alerts').selectAll().where('vaultId', '=', vaultId).where('activeKey', '=', activeKey).executeTakeFirst();
      if (!row) return undefined;
      const r = await trx.updateTable('alerts').set({ state: 'resolved', activeKey: null, resolvedAt: now, lastAt: now }).where('id', '=', row.id).where('activeKey', '=', activeKey).executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) return undefined;
      await this.enqueue(trx, vaultId, row.id, 'resolved', row.severity as Severity);
      return toAlert({ ...(row as AlertRow), state: 'resolved', resolvedAt: now, lastAt: now });
    });
    if (resolved) await this.events.record({ vaultId, type: 'alert.resolved', severity: 'info', subject, message: `${kind} resolved: ${resolved.message}`, details: { alertId: resolved.id, kind } });
    return resolved;
  }

  async list(vaultId: string, f: { state?: Alert['state']; kind?: string; subject?: string; limit?: number; before?: string } = {}): Promise<Alert[]> {
    let q = this.db.selectFrom('alerts').selectAll().where('vaultId', '=', vaultId);
    if (f.state) q = q.where('state', '=', f.state);
    if (f.kind) q = q.where('kind', '=', f.kind);
    if (f.subject) q = q.where('subject', '=', f.subject);
    if (f.before) q = q.where('id', '<', f.before);
    return (await q.orderBy('id', 'desc').limit(f.limit ?? 100).execute()).map((r) => toAlert(r as AlertRow));
  }

  async get(vaultId: string, id: string): Promise<Alert> {
    const r = await this.db.selectFrom('alerts').selectAll().where('vaultId', '=', vaultId).where('id', '=', id).executeTakeFirst();
    if (!r) throw notFound('alert', id);
    return toAlert(r as AlertRow);
  }

  private async enqueue(trx: Kysely<Database>, vaultId: string, alertId: string, transition: 'raised' | 'resolved', severity: Severity): Promise<void> {
    const channels = await trx.selectFrom('alertChannels').select(['id', 'minSeverity']).where('vaultId', '=', vaultId).execute();
    const now = new Date().toISOString();
    const rows = channels
      .filter((c) => severityRank(severity) >= severityRank(c.minSeverity as Severity))
      .map((c) => ({ id: newId('ntf'), alertId, channelId: c.id, transition, state: 'pending', attempts: 0, nextAttemptAt: now, lastError: null, createdAt: now, sentAt: null }));
    if (rows.length > 0) await trx.insertInto('notifications').values(rows).execute();
  }
}

const toChannel = (r: { id: string; vaultId: string; name: string; kind: string; configJson: string; minSeverity: string; createdAt: string }): AlertChannelConfig => ({
  id: r.id,
  vaultId: r.vaultId,
  name: r.name,
  kind: r.kind as ChannelKind,
  config: JSON.parse(r.configJson) as Record<string, unknown>,
  minSeverity: r.minSeverity as Severity,
  createdAt: r.createdAt,
});

/** Where a vault's alerts go: webhook and SMTP channels with their settings. */
export class AlertChannelRepository {
  constructor(private readonly db: Kysely<Database>) {}

  async create(input: Omit<AlertChannelConfig, 'id' | 'createdAt'>): Promise<AlertChannelConfig> {
    const row = { id: newId('chan'), vaultId: input.vaultId, name: input.name, kind: input.kind, configJson: JSON.stringify(input.config), minSeverity: input.minSeverity, createdAt: new Date().toISOString() };
    await insertUnique('alert channel', input.name, () => this.db.insertInto('alertChannels').values(row).execute());
    return toChannel(row);
  }

  async list(vaultId: string, page?: Page): Promise<AlertChannelConfig[]> {
    return (await paged(this.db.selectFrom('alertChannels').selectAll().where('vaultId', '=', vaultId), page).execute()).map(toChannel);
  }

  async get(vaultId: string, name: string): Promise<AlertChannelConfig> {
    const r = await this.db.selectFrom('alertChannels').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!r) throw notFound('alert channel', name);
    return toChannel(r);
  }

  async byId(id: string): Promise<AlertChannelConfig | undefined> {
    const r = await this.db.selectFrom('alertChannels').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toChannel(r) : undefined;
  }

  async delete(c: AlertChannelConfig): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('notifications').where('channelId', '=', c.id).execute();
      await trx.deleteFrom('alertChannels').where('id', '=', c.id).execute();
    });
  }
}
