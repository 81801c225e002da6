import { sql, type Kysely, type Transaction } from 'kysely';
import { RefugeError, notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { ReplicationProgress } from '../../protocol/schemas.js';
import type { Database } from '../db/schema.js';
import type { DiskChurn, RecoveryPoint, Replication } from '../model.js';
import type { ReplicationStatus } from '../replication-state.js';
import { toPoint, toReplication } from './rows.js';
import { paged, type Page } from './common.js';

export interface ReplicationFilter extends Page {
  state?: string;
  sourceSiteId?: string;
  targetSiteId?: string;
  groupId?: string;
  names?: string[];
}

type Db = Kysely<Database> | Transaction<Database>;

/** Replications and their recovery points. Status changes are compare-and-set, so concurrent operations race safely. */
export class ReplicationRepository {
  /** Who waits in this process for a replication's next recorded point (see `nextPointRecorded`). */
  private readonly pointWaiters = new Map<string, Set<() => void>>();

  constructor(private readonly db: Kysely<Database>) {}

  /**
   * Resolves when this process records a point of the replication, or after `timeoutMs` (a point recorded by
   * another vault process is only seen by looking again), or when `signal` aborts: a job waiting for a point
   * (re-protect's first point) learns of it at once instead of at its next poll.
   */
  nextPointRecorded(replicationId: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.pointWaiters.get(replicationId) ?? new Set<() => void>();
      this.pointWaiters.set(replicationId, waiters);
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        waiters.delete(done);
        if (waiters.size === 0 && this.pointWaiters.get(replicationId) === waiters) this.pointWaiters.delete(replicationId);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref(); // a waiter left behind (its point came first) never holds the process open
      signal?.addEventListener('abort', done, { once: true });
      waiters.add(done);
    });
  }

  async create(input: {
    vaultId: string;
    name: string;
    machineId: string;
    policyId: string;
    sourceSiteId: string;
    targetSiteId: string;
  }): Promise<Replication> {
    const now = new Date().toISOString();
    try {
      await this.db
        .insertInto('replications')
        .values({
          id: newId('rep'),
          ...input,
          state: 'seeding',
          testFailoverState: 'none',
          activeJobId: null,
          progressJson: null,
          failoverJson: null,
          groupId: null,
          createdAt: now,
          updatedAt: now,
        })
        .execute();
    } catch (err) {
      if (/UNIQUE constraint failed|duplicate key value/.test(String((err as Error).message))) {
        throw new RefugeError('already_exists', `machine '${input.name}' is already replicated`, {
          hint: `see it with \`refuge replication show ${input.name}\``,
        });
      }
      throw err;
    }
    return this.get(input.vaultId, input.name);
  }

  async list(vaultId: string, f: ReplicationFilter = {}): Promise<Replication[]> {
    let q = this.db.selectFrom('replications').selectAll().where('vaultId', '=', vaultId);
    if (f.state) q = q.where('state', '=', f.state);
    if (f.targetSiteId) q = q.where('targetSiteId', '=', f.targetSiteId);
    if (f.sourceSiteId) q = q.where('sourceSiteId', '=', f.sourceSiteId);
    if (f.groupId) q = q.where('groupId', '=', f.groupId);
    if (f.names) q = f.names.length === 0 ? q.where(sql<boolean>`1 = 0`) : q.where('name', 'in', f.names);
    return (await paged(q, f).execute()).map(toReplication);
  }

  /** Whether the vault records any recovery point of a replication that targets `siteId` (in that site's store). */
  async hasPointsAt(siteId: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('recoveryPoints as p')
      .innerJoin('replications as r', 'r.id', 'p.replicationId')
      .select('p.id')
      .where('r.targetSiteId', '=', siteId)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** The latest point of each replication, in one query (for lists). */
  async latestPoints(replicationIds: string[]): Promise<Map<string, RecoveryPoint>> {
    if (replicationIds.length === 0) return new Map();
    const latest = this.db
      .selectFrom('recoveryPoints')
      .select(['replicationId', (eb) => eb.fn.max('capturedAt').as('capturedAt')])
      .where('replicationId', 'in', replicationIds)
      .groupBy('replicationId')
      .as('latest');
    const rows = await this.db
      .selectFrom('recoveryPoints as p')
      .innerJoin(latest, (j) => j.onRef('latest.replicationId', '=', 'p.replicationId').onRef('latest.capturedAt', '=', 'p.capturedAt'))
      .selectAll('p')
      .execute();
    return new Map(rows.map((r) => [r.replicationId, toPoint(r)]));
  }

  /** Points of a replication captured at or after `since` (churn over a window). */
  async pointsSince(replicationId: string, since: string): Promise<RecoveryPoint[]> {
    const rows = await this.db.selectFrom('recoveryPoints').selectAll().where('replicationId', '=', replicationId).where('capturedAt', '>=', since).orderBy('capturedAt').execute();
    return rows.map(toPoint);
  }

  async setGroup(id: string, groupId: string | null): Promise<void> {
    await this.db.updateTable('replications').set({ groupId, updatedAt: new Date().toISOString() }).where('id', '=', id).execute();
  }

  async setPolicy(id: string, policyId: string): Promise<void> {
    await this.db.updateTable('replications').set({ policyId, updatedAt: new Date().toISOString() }).where('id', '=', id).execute();
  }

  async get(vaultId: string, name: string): Promise<Replication> {
    const row = await this.db.selectFrom('replications').selectAll().where('vaultId', '=', vaultId).where('name', '=', name).executeTakeFirst();
    if (!row) throw notFound('replication', name, 'enable replication with `refuge replication enable MACHINE`');
    return toReplication(row);
  }

  async byId(id: string, db: Db = this.db): Promise<Replication> {
    const row = await db.selectFrom('replications').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('replication', id);
    return toReplication(row);
  }

  async findByMachine(machineId: string): Promise<Replication | undefined> {
    const row = await this.db.selectFrom('replications').selectAll().where('machineId', '=', machineId).executeTakeFirst();
    return row ? toReplication(row) : undefined;
  }

  /**
   * Sets the status fields in `next` only if the replication still has status `expected`; returns whether it did.
   * This is the single place where operations race: the loser sees `false`.
   */
  async compareAndSetStatus(id: string, expected: ReplicationStatus, next: Partial<ReplicationStatus>, db: Db = this.db): Promise<boolean> {
    let q = db
      .updateTable('replications')
      .set({ ...next, updatedAt: new Date().toISOString() })
      .where('id', '=', id)
      .where('state', '=', expected.state)
      .where('testFailoverState', '=', expected.testFailoverState);
    q = expected.activeJobId === null ? q.where('activeJobId', 'is', null) : q.where('activeJobId', '=', expected.activeJobId);
    const result = await q.executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async setProgress(id: string, progress: ReplicationProgress): Promise<void> {
    await this.db.updateTable('replications').set({ progressJson: JSON.stringify(progress) }).where('id', '=', id).execute();
  }

  async setFailover(id: string, failover: Replication['failover'], db: Db = this.db): Promise<void> {
    await db
      .updateTable('replications')
      .set({ failoverJson: JSON.stringify(failover), updatedAt: new Date().toISOString() })
      .where('id', '=', id)
      .execute();
  }

  /** Records a committed point; the first point of a seeding replication makes it `protected`. */
  async recordPoint(point: Omit<RecoveryPoint, 'groupCutId' | 'diskChurn'> & { diskChurn?: DiskChurn[] | undefined }): Promise<void> {
    const { diskChurn, ...row } = point;
    const values = { ...row, diskChurn: diskChurn ? JSON.stringify(diskChurn) : null };
    await this.db.transaction().execute(async (trx) => {
      // Recording again is harmless; a replay that knows the churn per disk fills it in where it was unknown.
      await trx
        .insertInto('recoveryPoints')
        .values(values)
        .onConflict((oc) => (values.diskChurn === null ? oc.column('id').doNothing() : oc.column('id').doUpdateSet({ diskChurn: values.diskChurn }).where('recoveryPoints.diskChurn', 'is', null)))
        .execute();
      await trx
        .updateTable('replications')
        .set({ state: 'protected', updatedAt: new Date().toISOString() })
        .where('id', '=', point.replicationId)
        .where('state', '=', 'seeding')
        .execute();
    });
    for (const wake of [...(this.pointWaiters.get(point.replicationId) ?? [])]) wake();
  }

  async listPoints(replicationId: string, limit = 1000): Promise<RecoveryPoint[]> {
    const rows = await this.db
      .selectFrom('recoveryPoints')
      .selectAll()
      .where('replicationId', '=', replicationId)
      .orderBy('capturedAt', 'desc')
      .limit(limit)
      .execute();
    return rows.map(toPoint);
  }

  async latestPoint(replicationId: string): Promise<RecoveryPoint | undefined> {
    return (await this.listPoints(replicationId, 1))[0];
  }

  async getPoint(replicationId: string, pointId: string): Promise<RecoveryPoint> {
    const row = await this.db
      .selectFrom('recoveryPoints')
      .selectAll()
      .where('replicationId', '=', replicationId)
      .where('id', '=', pointId)
      .executeTakeFirst();
    if (!row) throw notFound('recovery point', pointId, 'list points with `refuge point list REPLICATION`');
    return toPoint(row);
  }

  /**
   * The latest point that is app-consistent (`app`), or that was cut together with its consistency group
   * (`group-cut`: the group cut column is set), for the failover point choices.
   */
  async latestPointOf(replicationId: string, kind: 'app' | 'group-cut'): Promise<RecoveryPoint | undefined> {
    let q = this.db.selectFrom('recoveryPoints').selectAll().where('replicationId', '=', replicationId);
    q = kind === 'app' ? q.where('consistency', '=', 'app') : q.where(sql<boolean>`group_cut_id is not null`);
    const row = await q.orderBy('capturedAt', 'desc').limit(1).executeTakeFirst();
    return row ? toPoint(row) : undefined;
  }

  /** Forgets every point record of a replication (a re-protect starts a new history in the other direction). */
  /** Forgets one point (retention pruned it from the store). */
  async deletePoint(replicationId: string, pointId: string): Promise<void> {
    await this.db.deleteFrom('recoveryPoints').where('replicationId', '=', replicationId).where('id', '=', pointId).execute();
  }

  async deletePoints(replicationId: string, db: Db = this.db): Promise<void> {
    await db.deleteFrom('recoveryPoints').where('replicationId', '=', replicationId).execute();
  }

  /** Points the replication the other way (re-protect): the machine now replicates from `sourceSiteId`. */
  async setDirection(id: string, sourceSiteId: string, targetSiteId: string, db: Db = this.db): Promise<void> {
    await db.updateTable('replications').set({ sourceSiteId, targetSiteId, updatedAt: new Date().toISOString() }).where('id', '=', id).execute();
  }

  /** Removes the replication and its point records (the store's objects are the orchestration's to delete). */
  async delete(id: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('recoveryPoints').where('replicationId', '=', id).execute();
      await trx.deleteFrom('replications').where('id', '=', id).execute();
    });
  }
}
