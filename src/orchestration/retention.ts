import { isRefugeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { collectGarbage } from '../store/gc.js';
import { asrRetention, selectRetained } from '../store/retention.js';
import type { Replication } from '../vault/model.js';
import type { AlertRepository } from '../vault/monitoring/alerts.js';
import type { EventRepository } from '../vault/monitoring/events.js';
import { isReplicating } from '../vault/replication-state.js';
import type { OrchestrationDeps } from './deps.js';

const HOUR = 3600_000;

export interface RetentionOptions {
  log?: Logger;
  /** Unreferenced store data younger than this survives garbage collection (commits in flight; default 1 hour). */
  gcGraceMs?: number;
  /** A site's store is garbage-collected at most this often, and only after points were pruned (default 6 hours). */
  gcEveryMs?: number;
  /** Where a pass records the point records it forgot. */
  events?: Pick<EventRepository, 'record'>;
  /** Where a pass raises (and later resolves) `replica-store-mismatch`: a store lacking a replication's latest point. */
  alerts?: Pick<AlertRepository, 'raise' | 'resolve'>;
}

export interface RetentionPass {
  /** Points pruned, per replication name. */
  pruned: Record<string, number>;
  /** Sites whose store was garbage-collected in this pass, with the bytes it freed. */
  collected: Record<string, number>;
  /** Point records forgotten because their store no longer holds the point (pruned outside the vault), per replication name. */
  forgotten: Record<string, number>;
}

/**
 * Applies every policy's retention to its replications' recovery points (the ASR schedule cut at the policy's
 * `retentionHours`, store/retention.ts), in the store and in the vault's records, and reclaims the space with the
 * store's garbage collection. Replications with a test failover or a failover in progress are left alone: their
 * points are in use. The manifest is deleted before the record, so a crash in between leaves a record whose point
 * is gone, which the next pass deletes; never a point the vault does not list (and the store keeps everything its
 * latest point needs: the latest point is always kept). Several vault processes may run passes at once: deleting a
 * point twice is harmless, and the store's garbage collection takes the store's exclusive lock.
 *
 * A pass also brings the vault's records in line with the store: a point pruned outside the vault (`refuge store
 * prune` run by an operator) would otherwise stay listed, offered for failover, and fail only when used. Such
 * records are forgotten, with an event, once two passes in a row found them gone, and only while the store still
 * holds the replication's latest recorded point: a store lacking that one is more likely the wrong store (an
 * unmounted folder, another bucket) than a prune, which always keeps the latest; then nothing is forgotten and the
 * critical `replica-store-mismatch` alert is raised, resolved once the store holds the latest point again.
 */
export class RetentionService {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private readonly lastGc = new Map<string, number>();
  private readonly prunedSinceGc = new Set<string>();
  /** Per replication, the recorded points its store lacked at the previous pass (forgotten only if still missing). */
  private readonly missingLastPass = new Map<string, Set<string>>();
  private readonly log: Logger;

  constructor(
    private readonly deps: OrchestrationDeps,
    private readonly o: RetentionOptions = {},
  ) {
    this.log = o.log ?? silentLogger;
  }

  /** One pass over every vault's replications at time `now`. */
  async pass(now = Date.now()): Promise<RetentionPass> {
    const result: RetentionPass = { pruned: {}, collected: {}, forgotten: {} };
    const { repos } = this.deps;
    const seen = new Set<string>();
    for (const vault of await repos.vaults.list()) {
      for (const rep of await repos.replications.list(vault.id)) {
        seen.add(rep.id);
        try {
          const n = await this.prune(rep, now);
          if (n > 0) {
            result.pruned[rep.name] = n;
            this.prunedSinceGc.add(rep.targetSiteId);
          }
          const forgotten = await this.forgetPrunedElsewhere(rep.id); // after pruning: what retention prunes anyway is not "elsewhere"
          if (forgotten > 0) result.forgotten[rep.name] = forgotten;
        } catch (err) {
          this.log.warn({ err, replication: rep.name }, 'retention could not prune or check this replication now');
        }
      }
    }
    for (const id of [...this.missingLastPass.keys()]) if (!seen.has(id)) this.missingLastPass.delete(id); // deleted replications
    for (const siteId of [...this.prunedSinceGc]) {
      if (now - (this.lastGc.get(siteId) ?? 0) < (this.o.gcEveryMs ?? 6 * HOUR)) continue;
      const site = await repos.sites.byId(siteId);
      try {
        const r = await collectGarbage(await this.deps.sites.store(site), { graceMs: this.o.gcGraceMs ?? HOUR });
        this.lastGc.set(siteId, now);
        this.prunedSinceGc.delete(siteId);
        result.collected[site.name] = r.bytesBefore - r.bytesAfter;
        this.log.info({ site: site.name, freedBytes: r.bytesBefore - r.bytesAfter, packsDeleted: r.packsDeleted }, 'store garbage collected after retention');
      } catch (err) {
        this.log.warn({ err, site: site.name }, 'store garbage collection after retention failed; it is retried at the next pass');
      }
    }
    return result;
  }

  private async prune(rep: Replication, now: number): Promise<number> {
    if (!isReplicating(rep.state) || rep.failover.test || rep.failover.failover) return 0;
    const { repos, sites } = this.deps;
    const policy = await repos.policies.byId(rep.policyId);
    const points = await repos.replications.listPoints(rep.id, 100_000);
    const facts = points.map((p) => ({ id: p.id, capturedAt: Date.parse(p.capturedAt), consistency: p.consistency, groupCut: p.groupCutId !== null }));
    const { prune } = selectRetained(facts, asrRetention(policy.retentionHours * HOUR), now);
    if (prune.length === 0) return 0;
    const store = await sites.store(await repos.sites.byId(rep.targetSiteId));
    for (const id of prune) {
      await store.deletePoint(rep.id, id).catch((err: unknown) => {
        if (!isRefugeError(err, 'not_found')) throw err;
      });
      await repos.replications.deletePoint(rep.id, id);
    }
    this.log.info({ replication: rep.name, pruned: prune.length, kept: points.length - prune.length }, 'recovery points pruned by retention');
    return prune.length;
  }

  /**
   * Forgets the records of points the store no longer holds (see the class comment); how many. Forgetting cannot be
   * undone, so a point counts as gone only when the backend itself says its manifest does not exist (a listing may
   * lag) and only when it was found gone by the previous pass too: a point another vault's retention or a repair job
   * is deleting (the manifest goes first, the record after) has lost its record by then, and vanishes silently. The
   * replication is read again first and left alone unless it is plainly `protected` (a repair drops broken points,
   * a resync or a re-protect replaces them).
   */
  private async forgetPrunedElsewhere(repId: string): Promise<number> {
    const { repos, sites } = this.deps;
    const rep = await repos.replications.byId(repId);
    const suspectedBefore = this.missingLastPass.get(rep.id) ?? new Set<string>();
    this.missingLastPass.delete(rep.id);
    if (rep.state !== 'protected' || rep.failover.test || rep.failover.failover) return 0;
    const records = await repos.replications.listPoints(rep.id, 100_000); // newest first
    const latest = records[0];
    if (!latest) return 0;
    const site = await repos.sites.byId(rep.targetSiteId);
    const store = await sites.store(site);
    const listed = new Set(await store.listPointIds(rep.id));
    const subject = rep.name;
    if (!listed.has(latest.id) && !(await store.hasPoint(rep.id, latest.id))) {
      // The wrong store, most likely: nothing else is looked at (nor remembered, so that once the right store is
      // back, forgetting again needs two passes that both find a point gone).
      this.missingLastPass.set(rep.id, new Set([latest.id]));
      if (!suspectedBefore.has(latest.id)) return 0;
      const held = records.filter((p) => listed.has(p.id)).length;
      const message = `the replica store of site '${site.name}' lacks the latest recovery point the vault lists for '${rep.name}' (${latest.id}), and holds ${held} of its ${records.length}: is it the right store (mounted, the same bucket)? The vault's records are left as they are`;
      this.log.error({ replication: rep.name, site: site.name, latest: latest.id, held, recorded: records.length }, message);
      await this.o.alerts?.raise(rep.vaultId, { kind: 'replica-store-mismatch', subject, severity: 'critical', message, details: { site: site.name, latest: latest.id, held, recorded: records.length } });
      return 0;
    }
    const gone: string[] = [];
    for (const p of records) if (!listed.has(p.id) && !(await store.hasPoint(rep.id, p.id))) gone.push(p.id);
    this.missingLastPass.set(rep.id, new Set(gone));
    await this.o.alerts?.resolve(rep.vaultId, 'replica-store-mismatch', subject);
    const ids = gone.filter((id) => suspectedBefore.has(id));
    if (ids.length === 0) return 0;
    for (const id of ids) await repos.replications.deletePoint(rep.id, id);
    const message = `${ids.length} recovery point(s) of '${rep.name}' are no longer in the replica store of site '${site.name}' (pruned outside the vault): the vault no longer lists them`;
    this.log.warn({ replication: rep.name, site: site.name, forgotten: ids.slice(0, 20) }, message);
    await this.o.events?.record({ vaultId: rep.vaultId, type: 'recovery-points.forgotten', severity: 'warning', subject, message, details: { site: site.name, forgotten: ids.slice(0, 100), forgottenCount: ids.length } });
    return ids.length;
  }

  /** Runs a pass every `everyMs` (the first one after `everyMs`). */
  start(everyMs: number): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.pass()
        .catch((err: unknown) => this.log.error({ err }, 'retention pass failed'))
        .finally(() => (this.running = undefined));
    }, everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
