import type { Kysely, Selectable } from 'kysely';
import { RefugeError, notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Database, GroupCutMemberTable, GroupCutTable } from '../db/schema.js';
import type { ConsistencyGroup } from '../model.js';
import { isReplicating } from '../replication-state.js';

export type GroupCutState = 'open' | 'complete' | 'failed';
/** A member's progress through the barrier (../../protocol/group-cut.ts); only ever moves forward. */
export type MemberPhase = 'pending' | 'prepared' | 'paused' | 'cut' | 'failed';
const PHASE_ORDER: MemberPhase[] = ['pending', 'prepared', 'paused', 'cut'];

export type GroupCutMember = Omit<Selectable<GroupCutMemberTable>, 'cutId' | 'phase'> & { phase: MemberPhase };
export type GroupCut = Omit<Selectable<GroupCutTable>, 'openKey' | 'state'> & { state: GroupCutState; members: GroupCutMember[] };

/** Where a barrier stands for one phase: everyone is there, not yet, or the cut failed (and why). */
export type BarrierStatus = { kind: 'proceed' } | { kind: 'wait' } | { kind: 'failed'; reason: string };

export interface OpenCutOptions {
  trigger: 'schedule' | 'manual';
  /** Members must all be prepared and paused within this many seconds of the opening. */
  barrierSeconds: number;
  /** Once all are prepared, the longest any member may hold its writes waiting for the others to pause. */
  pauseSeconds: number;
  /** Every member's point must be recorded within this many seconds of the opening. */
  commitSeconds: number;
}

const later = (from: Date, seconds: number) => new Date(from.getTime() + seconds * 1000).toISOString();

/**
 * Consistency-group cuts (src/vault/group-cuts.ts coordinates them): their rows and every state change, each one
 * conditional on the state it expects, so several vault processes (and retried agent requests) race safely.
 */
export class GroupCutRepository {
  constructor(
    private readonly db: Kysely<Database>,
    /** Called once per cut when it completes or fails (the coordinator records an event). */
    private readonly onResolved: (cutId: string, state: 'complete' | 'failed', reason: string | null) => Promise<void> = async () => undefined,
  ) {}

  /** Opens a cut of `group` over its replicating members; at most one cut of a group is open at a time. */
  async open(group: ConsistencyGroup, o: OpenCutOptions): Promise<GroupCut> {
    const members = (await this.db.selectFrom('replications').select(['id', 'state']).where('groupId', '=', group.id).execute()).filter((r) =>
      isReplicating(r.state as Parameters<typeof isReplicating>[0]),
    );
    if (members.length === 0) {
      throw new RefugeError('failed_precondition', `consistency group '${group.name}' has no replicating member to cut`, {
        hint: 'enable replications with --group, or wait until they are seeding or protected',
      });
    }
    const now = new Date();
    const at = now.toISOString();
    const id = newId('gcut');
    const inserted = await this.db.transaction().execute(async (trx) => {
      const r = await trx
        .insertInto('groupCuts')
        .values({
          id,
          vaultId: group.vaultId,
          groupId: group.id,
          state: 'open',
          openKey: group.id,
          trigger: o.trigger,
          openedAt: at,
          barrierDeadline: later(now, o.barrierSeconds),
          pauseSeconds: o.pauseSeconds,
          commitDeadline: later(now, o.commitSeconds),
          pausedAt: null,
          resolvedAt: null,
          reason: null,
        })
        .onConflict((oc) => oc.column('openKey').doNothing())
        .executeTakeFirst();
      if (Number(r.numInsertedOrUpdatedRows ?? 0) === 0) return false;
      await trx.insertInto('groupCutMembers').values(members.map((m) => ({ cutId: id, replicationId: m.id, phase: 'pending', pointId: null, error: null, updatedAt: at }))).execute();
      return true;
    });
    if (!inserted) throw new RefugeError('conflict', `a cut of consistency group '${group.name}' is already open`, { hint: 'wait for it to complete or fail' });
    return this.get(id);
  }

  async get(id: string): Promise<GroupCut> {
    const row = await this.db.selectFrom('groupCuts').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw notFound('group cut', id);
    const members = await this.db.selectFrom('groupCutMembers').selectAll().where('cutId', '=', id).orderBy('replicationId').execute();
    const { openKey: _k, ...rest } = row;
    return { ...rest, state: row.state as GroupCutState, members: members.map(({ cutId: _c, ...m }) => ({ ...m, phase: m.phase as MemberPhase })) };
  }

  /** The group's cuts, newest first. */
  async list(groupId: string, limit = 50): Promise<GroupCut[]> {
    const rows = await this.db.selectFrom('groupCuts').select('id').where('groupId', '=', groupId).orderBy('openedAt', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return Promise.all(rows.map((r) => this.get(r.id)));
  }

  async latestOpenedAt(groupId: string): Promise<string | undefined> {
    const r = await this.db.selectFrom('groupCuts').select('openedAt').where('groupId', '=', groupId).orderBy('openedAt', 'desc').limit(1).executeTakeFirst();
    return r?.openedAt;
  }

  async openCuts(): Promise<{ id: string; vaultId: string; groupId: string }[]> {
    return this.db.selectFrom('groupCuts').select(['id', 'vaultId', 'groupId']).where('state', '=', 'open').execute();
  }

  /** The open cut `replicationId` still has to take part in (not yet cut, not failed), if any. */
  async pendingFor(replicationId: string): Promise<GroupCut | undefined> {
    const r = await this.db
      .selectFrom('groupCutMembers as m')
      .innerJoin('groupCuts as c', 'c.id', 'm.cutId')
      .select('c.id')
      .where('m.replicationId', '=', replicationId)
      .where('c.state', '=', 'open')
      .where('m.phase', 'in', ['pending', 'prepared', 'paused'])
      .executeTakeFirst();
    return r ? this.get(r.id) : undefined;
  }

  /** Moves a member forward to `phase` (never back); a member that is not in the cut is refused. */
  async advance(cut: GroupCut, replicationId: string, phase: 'prepared' | 'paused'): Promise<void> {
    if (!cut.members.some((m) => m.replicationId === replicationId)) throw new RefugeError('invalid_argument', `replication '${replicationId}' is not a member of cut '${cut.id}'`);
    const earlier = PHASE_ORDER.slice(0, PHASE_ORDER.indexOf(phase));
    await this.db
      .updateTable('groupCutMembers')
      .set({ phase, updatedAt: new Date().toISOString() })
      .where('cutId', '=', cut.id)
      .where('replicationId', '=', replicationId)
      .where('phase', 'in', earlier)
      .execute();
  }

  /**
   * Where the barrier for `phase` stands. Fails the cut when a deadline passed: the barrier deadline, or (for the
   * pause) the pause window that starts when every member is prepared.
   */
  async barrier(cutId: string, phase: 'prepared' | 'paused', now = new Date()): Promise<BarrierStatus> {
    let cut = await this.get(cutId);
    if (cut.state !== 'open') return cut.state === 'failed' ? { kind: 'failed', reason: cut.reason ?? 'failed' } : { kind: 'proceed' };
    const failed = cut.members.find((m) => m.phase === 'failed');
    if (failed) return this.failed(cutId, `member ${(await this.names([failed.replicationId])).join('')} failed: ${failed.error ?? 'unknown'}`);
    const reached = (p: MemberPhase) => cut.members.every((m) => PHASE_ORDER.indexOf(m.phase) >= PHASE_ORDER.indexOf(p));
    if (reached('prepared') && cut.pausedAt === null) {
      // The pause window opens once, when the last member is prepared.
      await this.db.updateTable('groupCuts').set({ pausedAt: now.toISOString() }).where('id', '=', cutId).where('pausedAt', 'is', null).execute();
      cut = await this.get(cutId);
    }
    if (reached(phase)) return { kind: 'proceed' };
    const late = await this.names(cut.members.filter((m) => PHASE_ORDER.indexOf(m.phase) < PHASE_ORDER.indexOf(phase)).map((m) => m.replicationId));
    if (now.toISOString() > cut.barrierDeadline) return this.failed(cutId, `barrier timed out waiting for ${late.join(', ')} to be ${phase}`);
    if (phase === 'paused' && cut.pausedAt && now.getTime() > Date.parse(cut.pausedAt) + cut.pauseSeconds * 1000) {
      return this.failed(cutId, `pause window of ${cut.pauseSeconds} s passed waiting for ${late.join(', ')} to pause`);
    }
    return { kind: 'wait' };
  }

  /** Replication names (what operators know them by) for messages, in the order given. */
  private async names(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.selectFrom('replications').select(['id', 'name']).where('id', 'in', ids).execute();
    // Sorted: messages name the members the same way whatever order the database returned them in.
    return ids.map((id) => rows.find((r) => r.id === id)?.name ?? id).sort();
  }

  private async failed(cutId: string, reason: string): Promise<BarrierStatus> {
    await this.fail(cutId, reason);
    const cut = await this.get(cutId);
    return { kind: 'failed', reason: cut.reason ?? reason };
  }

  /** Fails an open cut; true if this call did it (the first reason wins). Its points stay ordinary points. */
  async fail(cutId: string, reason: string): Promise<boolean> {
    const r = await this.db
      .updateTable('groupCuts')
      .set({ state: 'failed', openKey: null, reason: reason.slice(0, 2000), resolvedAt: new Date().toISOString() })
      .where('id', '=', cutId)
      .where('state', '=', 'open')
      .executeTakeFirst();
    const did = Number(r.numUpdatedRows) === 1;
    if (did) await this.onResolved(cutId, 'failed', reason);
    return did;
  }

  /** A member's outcome: the point it committed for the cut, or its error (which fails the cut). */
  async report(cut: GroupCut, replicationId: string, result: { pointId: string } | { error: string }): Promise<void> {
    if (!cut.members.some((m) => m.replicationId === replicationId)) throw new RefugeError('invalid_argument', `replication '${replicationId}' is not a member of cut '${cut.id}'`);
    const now = new Date().toISOString();
    if ('error' in result) {
      await this.db.updateTable('groupCutMembers').set({ phase: 'failed', error: result.error, updatedAt: now }).where('cutId', '=', cut.id).where('replicationId', '=', replicationId).execute();
      await this.fail(cut.id, `member ${(await this.names([replicationId])).join('')} failed: ${result.error}`);
      return;
    }
    const member = cut.members.find((m) => m.replicationId === replicationId);
    if (member?.phase !== 'paused' && member?.phase !== 'cut') {
      throw new RefugeError('failed_precondition', `replication '${replicationId}' reports a point for cut '${cut.id}' without having paused at its barrier`);
    }
    await this.db.updateTable('groupCutMembers').set({ phase: 'cut', pointId: result.pointId, updatedAt: now }).where('cutId', '=', cut.id).where('replicationId', '=', replicationId).where('phase', 'in', ['paused', 'cut']).execute();
  }

  /**
   * Completes the cut if every member reported a point and every point is recorded (a standalone replicator records
   * them shortly after the agent hears of the commit): marks the points and the cut in one transaction. Fails it
   * once its commit deadline passed. Returns the cut's state.
   */
  async settle(cutId: string, now = new Date()): Promise<GroupCutState> {
    const cut = await this.get(cutId);
    if (cut.state !== 'open') return cut.state;
    const ids = cut.members.map((m) => m.pointId).filter((p): p is string => p !== null);
    const recorded = ids.length === 0 ? [] : await this.db.selectFrom('recoveryPoints').select(['id', 'replicationId']).where('id', 'in', ids).execute();
    const everyone = cut.members.every((m) => m.phase === 'cut' && recorded.some((p) => p.id === m.pointId && p.replicationId === m.replicationId));
    if (!everyone) {
      if (now.toISOString() > cut.commitDeadline) {
        const missing = await this.names(cut.members.filter((m) => !recorded.some((p) => p.id === m.pointId)).map((m) => m.replicationId));
        await this.fail(cutId, `no recorded point from ${missing.join(', ')} by the commit deadline`);
        return 'failed';
      }
      if (cut.members.some((m) => m.phase === 'failed')) {
        await this.fail(cutId, 'a member failed');
        return 'failed';
      }
      return 'open';
    }
    const state = await this.db.transaction().execute(async (trx) => {
      const r = await trx.updateTable('groupCuts').set({ state: 'complete', openKey: null, resolvedAt: now.toISOString() }).where('id', '=', cutId).where('state', '=', 'open').executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) return { did: false, state: (await trx.selectFrom('groupCuts').select('state').where('id', '=', cutId).executeTakeFirstOrThrow()).state as GroupCutState };
      await trx.updateTable('recoveryPoints').set({ groupCutId: cutId }).where('id', 'in', ids).execute();
      return { did: true, state: 'complete' as const };
    });
    if (state.did) await this.onResolved(cutId, 'complete', null);
    return state.state;
  }

  /**
   * Forgets resolved cuts that ended before `olderThan` and that no recovery point belongs to any more (retention
   * pruned their points, or the cut failed and never had a group point): scheduled cuts every 5 minutes would
   * otherwise grow the history by ~100,000 rows a year per group. A cut still named by a point is kept, so the
   * points' `groupCutId` always resolves. Returns the number of cuts forgotten.
   */
  async pruneHistory(olderThan: string): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      const ids = (
        await trx
          .selectFrom('groupCuts as c')
          .select('c.id')
          .where('c.state', 'in', ['complete', 'failed'])
          .where('c.resolvedAt', '<', olderThan)
          .where((eb) => eb.not(eb.exists(eb.selectFrom('recoveryPoints as p').select('p.id').whereRef('p.groupCutId', '=', 'c.id'))))
          .execute()
      ).map((r) => r.id);
      for (let i = 0; i < ids.length; i += 500) {
        const batch = ids.slice(i, i + 500);
        await trx.deleteFrom('groupCutMembers').where('cutId', 'in', batch).execute();
        await trx.deleteFrom('groupCuts').where('id', 'in', batch).execute();
      }
      return ids.length;
    });
  }
}
