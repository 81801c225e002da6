import type { Kysely, Transaction } from 'kysely';
import { RefugeError, notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Database, DrillRunTable, DrillTable } from '../../vault/db/schema.js';
import type { Probe } from './probe.js';

type Db = Kysely<Database> | Transaction<Database>;

export const DRILL_SUBJECTS = ['replication', 'plan'] as const;
export type DrillSubjectKind = (typeof DRILL_SUBJECTS)[number];

export interface Drill {
  id: string;
  vaultId: string;
  name: string;
  subjectKind: DrillSubjectKind;
  subject: string;
  intervalSeconds: number | null;
  nextRunAt: string | null;
  enabled: boolean;
  probe: Probe;
  createdAt: string;
  updatedAt: string;
}

export interface DrillRun {
  id: string;
  drillId: string;
  subjectKind: DrillSubjectKind;
  subject: string;
  jobId: string;
  trigger: 'schedule' | 'request';
  startedAt: string;
  endedAt: string | null;
  outcome: 'running' | 'succeeded' | 'failed';
  /** From the test failover request to the first successful probe of the test copy. */
  rtoSeconds: number | null;
  cleanedUp: boolean;
  details: Record<string, unknown>;
  error: string | null;
}

const toDrill = (r: DrillTable): Drill => ({
  id: r.id,
  vaultId: r.vaultId,
  name: r.name,
  subjectKind: r.subjectKind as DrillSubjectKind,
  subject: r.subject,
  intervalSeconds: r.intervalSeconds === null ? null : Number(r.intervalSeconds),
  nextRunAt: r.nextRunAt,
  enabled: Number(r.enabled) === 1,
  probe: JSON.parse(r.probeJson) as Probe,
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
});

const toRun = (r: DrillRunTable): DrillRun => ({
  id: r.id,
  drillId: r.drillId,
  subjectKind: r.subjectKind as DrillSubjectKind,
  subject: r.subject,
  jobId: r.jobId,
  trigger: r.trigger as DrillRun['trigger'],
  startedAt: r.startedAt,
  endedAt: r.endedAt,
  outcome: r.outcome as DrillRun['outcome'],
  rtoSeconds: r.rtoSeconds === null ? null : Number(r.rtoSeconds),
  cleanedUp: Number(r.cleanedUp) === 1,
  details: JSON.parse(r.detailsJson) as Record<string, unknown>,
  error: r.error,
});

/** Drills and their runs. */
export class DrillRepository {
  constructor(readonly db: Kysely<Database>) {}

  async create(input: { vaultId: string; name: string; subjectKind: DrillSubjectKind; subject: string; intervalSeconds: number | null; firstRunAt: string | null; probe: Probe }): Promise<Drill> {
    const now = new Date().toISOString();
    const row: DrillTable = {
      id: newId('drill'),
      vaultId: input.vaultId,
      name: input.name,
      subjectKind: input.subjectKind,
      subject: input.subject,
      intervalSeconds: input.intervalSeconds,
      nextRunAt: input.firstRunAt ?? (input.intervalSeconds === null ? null : new Date(Date.now() + input.intervalSeconds * 1000).toISOString()),
      enabled: 1,
      probeJson: JSON.stringify(input.probe),
      createdAt: now,
      updatedAt: now,
    };
    const exists = await this.db.selectFrom('drills').select('id').where('vaultId', '=', input.vaultId).where('name', '=', input.name).executeTakeFirst();
    if (exists) throw new RefugeError('already_exists', `drill '${input.name}' already exists`);
    await this.db.insertInto('drills').values(row).execute();
    return toDrill(row);
  }

  async list(vaultId: string, f: { subjectKind?: DrillSubjectKind; subject?: string } = {}): Promise<Drill[]> {
    let q = this.db.selectFrom('drills').selectAll().where('vaultId', '=', vaultId);
    if (f.subjectKind) q = q.where('subjectKind', '=', f.subjectKind);
    if (f.subject) q = q.where('subject', '=', f.subject);
    return (await q.orderBy('name').execute()).map(toDrill);
  }

  async get(vaultId: string, name: string): Promise<Drill> {
    const r = await this.db.selectFrom('drills').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!r) throw notFound('drill', name);
    return toDrill(r);
  }

  async byId(id: string, db: Db = this.db): Promise<Drill> {
    const r = await db.selectFrom('drills').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw notFound('drill', id);
    return toDrill(r);
  }

  async update(d: Drill, change: { intervalSeconds?: number | null; nextRunAt?: string | null; enabled?: boolean; probe?: Probe }): Promise<Drill> {
    await this.db
      .updateTable('drills')
      .set({
        ...(change.intervalSeconds !== undefined ? { intervalSeconds: change.intervalSeconds } : {}),
        ...(change.nextRunAt !== undefined ? { nextRunAt: change.nextRunAt } : {}),
        ...(change.enabled !== undefined ? { enabled: change.enabled ? 1 : 0 } : {}),
        ...(change.probe ? { probeJson: JSON.stringify(change.probe) } : {}),
        updatedAt: new Date().toISOString(),
      })
      .where('id', '=', d.id)
      .execute();
    return this.byId(d.id);
  }

  async delete(d: Drill): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('drillRuns').where('drillId', '=', d.id).execute();
      await trx.deleteFrom('drills').where('id', '=', d.id).execute();
    });
  }

  /** Enabled drills whose next run is due. */
  async due(now: string): Promise<Drill[]> {
    return (await this.db.selectFrom('drills').selectAll().where('enabled', '=', 1).where('nextRunAt', 'is not', null).where('nextRunAt', '<=', now).execute()).map(toDrill);
  }

  /** Moves a drill's next run from `from` to `to`; false if another process (or a restart) already did. */
  async claimDue(id: string, from: string, to: string | null): Promise<boolean> {
    const r = await this.db.updateTable('drills').set({ nextRunAt: to }).where('id', '=', id).where('nextRunAt', '=', from).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async insertRun(db: Db, run: Omit<DrillRun, 'endedAt' | 'rtoSeconds' | 'cleanedUp' | 'error' | 'outcome' | 'details'>, vaultId: string): Promise<void> {
    await db
      .insertInto('drillRuns')
      .values({ ...run, vaultId, endedAt: null, outcome: 'running', rtoSeconds: null, cleanedUp: 0, detailsJson: '{}', error: null })
      .execute();
  }

  /** Records how a run ended; only once (a resumed job's second attempt changes nothing). */
  async finishRun(id: string, end: { outcome: 'succeeded' | 'failed'; rtoSeconds: number | null; cleanedUp: boolean; details: Record<string, unknown>; error: string | null }): Promise<void> {
    await this.db
      .updateTable('drillRuns')
      .set({ outcome: end.outcome, rtoSeconds: end.rtoSeconds, cleanedUp: end.cleanedUp ? 1 : 0, detailsJson: JSON.stringify(end.details), error: end.error, endedAt: new Date().toISOString() })
      .where('id', '=', id)
      .where('outcome', '=', 'running')
      .execute();
  }

  async runs(drillId: string, limit = 20): Promise<DrillRun[]> {
    return (await this.db.selectFrom('drillRuns').selectAll().where('drillId', '=', drillId).orderBy('startedAt', 'desc').orderBy('id', 'desc').limit(limit).execute()).map(toRun);
  }

  async activeRun(drillId: string): Promise<DrillRun | undefined> {
    const r = await this.db.selectFrom('drillRuns').selectAll().where('drillId', '=', drillId).where('outcome', '=', 'running').executeTakeFirst();
    return r ? toRun(r) : undefined;
  }

  /** The latest run of any drill of this replication or plan, and the latest successful one. */
  async lastRuns(vaultId: string, subjectKind: DrillSubjectKind, subject: string): Promise<{ last: DrillRun | null; lastSuccessful: DrillRun | null }> {
    const q = this.db.selectFrom('drillRuns').selectAll().where('vaultId', '=', vaultId).where('subjectKind', '=', subjectKind).where('subject', '=', subject).orderBy('startedAt', 'desc').limit(1);
    const [last, ok] = await Promise.all([q.executeTakeFirst(), q.where('outcome', '=', 'succeeded').executeTakeFirst()]);
    return { last: last ? toRun(last) : null, lastSuccessful: ok ? toRun(ok) : null };
  }
}
