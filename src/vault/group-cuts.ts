import type { Kysely } from 'kysely';
import { silentLogger, type Logger } from '../core/log.js';
import type { Database } from './db/schema.js';
import type { ConsistencyGroup } from './model.js';
import type { EventRepository } from './monitoring/events.js';
import { GroupCutRepository, type GroupCut, type OpenCutOptions } from './repositories/group-cuts.js';

export interface GroupCutSettings {
  /**
   * Scheduled cuts: a group is cut every `max(this, its members' shortest crash interval)` seconds. 0 turns scheduled
   * cuts off (cuts are then only opened on request, `POST .../consistency-groups/{group}/cuts`).
   */
  minIntervalSeconds: number;
  barrierSeconds: number;
  pauseSeconds: number;
  commitSeconds: number;
}

export const DEFAULT_GROUP_CUT_SETTINGS: GroupCutSettings = { minIntervalSeconds: 300, barrierSeconds: 30, pauseSeconds: 5, commitSeconds: 600 };

/**
 * Coordinates consistency-group cuts (the protocol is in ../protocol/group-cut.ts): opens a cut of each group on
 * schedule or on request, settles open cuts (completes those whose every member point is recorded, fails those past
 * a deadline) and records an event for every cut that completes or fails. The barrier itself is answered by the
 * agent routes through `cuts`; every state change is a conditional update, so several vault processes may run this.
 */
export class GroupCutCoordinator {
  readonly cuts: GroupCutRepository;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private readonly log: Logger;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly events: EventRepository,
    readonly settings: GroupCutSettings = DEFAULT_GROUP_CUT_SETTINGS,
    log?: Logger,
  ) {
    this.log = log ?? silentLogger;
    this.cuts = new GroupCutRepository(db, (id, state, reason) => this.resolved(id, state, reason));
  }

  start(intervalMs = 1000): void {
    this.timer = setInterval(() => void this.tick().catch((err: unknown) => this.log.error({ err }, 'group cut coordination failed')), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Opens a cut of `group` now (409 if one is open; 412 if it has no replicating member). */
  async open(group: ConsistencyGroup, trigger: OpenCutOptions['trigger'], overrides: Partial<Omit<OpenCutOptions, 'trigger'>> = {}): Promise<GroupCut> {
    const { barrierSeconds, pauseSeconds, commitSeconds } = { ...this.settings, ...overrides };
    const cut = await this.cuts.open(group, { trigger, barrierSeconds, pauseSeconds, commitSeconds });
    this.log.info({ cut: cut.id, group: group.name, members: cut.members.length, trigger }, 'group cut opened');
    return cut;
  }

  async tick(now = new Date()): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      for (const c of await this.cuts.openCuts()) {
        await this.cuts.settle(c.id, now);
        // A member that never reaches the barrier (its agent is down) fails the cut at the barrier deadline.
        const cut = await this.cuts.get(c.id);
        if (cut.state === 'open' && cut.members.some((m) => m.phase !== 'cut') && now.toISOString() > cut.barrierDeadline) {
          await this.cuts.barrier(c.id, 'paused', now);
        }
      }
      if (this.settings.minIntervalSeconds > 0) await this.scheduleDue(now);
    } finally {
      this.ticking = false;
    }
  }

  private async scheduleDue(now: Date): Promise<void> {
    const groups = await this.db.selectFrom('consistencyGroups').selectAll().execute();
    for (const g of groups) {
      const members = await this.db
        .selectFrom('replications as r')
        .innerJoin('policies as p', 'p.id', 'r.policyId')
        .select(['r.state', 'p.crashIntervalSeconds'])
        .where('r.groupId', '=', g.id)
        .where('r.state', '=', 'protected') // a seeding member would hold the cut up for its whole seed
        .execute();
      if (members.length === 0) continue;
      const interval = Math.max(this.settings.minIntervalSeconds, Math.min(...members.map((m) => m.crashIntervalSeconds)));
      const last = await this.cuts.latestOpenedAt(g.id);
      if (last && now.getTime() - Date.parse(last) < interval * 1000) continue;
      await this.open(g, 'schedule').catch((err: unknown) => this.log.debug({ err, group: g.name }, 'scheduled group cut not opened'));
    }
  }

  private async resolved(cutId: string, state: 'complete' | 'failed', reason: string | null): Promise<void> {
    const cut = await this.cuts.get(cutId);
    const group = await this.db.selectFrom('consistencyGroups').select('name').where('id', '=', cut.groupId).executeTakeFirst();
    const name = group?.name ?? cut.groupId;
    const details = { cutId, members: cut.members.length, points: cut.members.map((m) => m.pointId).filter((p) => p !== null).join(',') };
    if (state === 'complete') {
      await this.events.record({ vaultId: cut.vaultId, type: 'group-cut.completed', severity: 'info', subject: name, message: `consistency group '${name}' cut at one instant across ${cut.members.length} machines`, details });
    } else {
      await this.events.record({ vaultId: cut.vaultId, type: 'group-cut.failed', severity: 'warning', subject: name, message: `consistency group '${name}' cut failed: ${reason ?? 'unknown'}; its points stay ordinary points`, details });
    }
    this.log.info({ cut: cutId, group: name, state, reason }, 'group cut resolved');
  }
}
