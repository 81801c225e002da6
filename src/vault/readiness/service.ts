import type { Kysely } from 'kysely';
import { RefugeError, notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Database } from '../db/schema.js';
import type { Machine, Policy, RecoveryPlan, Replication, Site, Vault } from '../model.js';
import type { AlertRepository } from '../monitoring/alerts.js';
import type { EventRepository } from '../monitoring/events.js';
import type { VaultRepositories } from '../repositories/index.js';
import type { Permission, Principal } from '../security/roles.js';
import { certificatesCheck, networkingCheck, supportMatrixCheck } from './checks-agent.js';
import { storageScalabilityCheck, targetCapacityCheck } from './checks-site.js';
import { accountCheck, vaultLocationCheck } from './checks-vault.js';
import { statusRank, type CheckInput, type CheckName, type CheckResult, type CheckStatus, type ReadinessEnvironment, type ReadinessReport, type ReadinessScope, type ReadinessTrigger } from './types.js';

/** Before a failover only what the recovery site needs is checked: the primary may be gone (an unplanned failover). */
const CHECKS_FOR: Record<ReadinessTrigger, CheckName[] | 'all'> = {
  'on-demand': 'all',
  enable: 'all',
  periodic: 'all',
  'test-failover': ['account', 'vault-location', 'target-capacity'],
  failover: ['account', 'vault-location', 'target-capacity'],
};

export interface CheckOptions {
  trigger: ReadinessTrigger;
  principal: Principal | null;
  permission: Permission;
}

type Scope = { scope: ReadinessScope; subject: string; target: Site; source?: Site; machines: Machine[]; replications: Replication[]; policy?: Policy };

/**
 * Runs the readiness checks for a scope (a replication, a machine about to be enabled, a recovery plan, a site),
 * stores the report, gates operations on it (a fail blocks unless an owner overrides with a reason), and runs
 * periodically, raising an alert when a subject's result worsens.
 */
export class ReadinessService {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly repos: VaultRepositories,
    private readonly env: ReadinessEnvironment,
    private readonly monitoring?: { alerts: AlertRepository; events: EventRepository },
  ) {}

  forReplication(vault: Vault, rep: Replication, o: CheckOptions): Promise<ReadinessReport> {
    return this.run(vault, o, async () => {
      const [machine, target, source, policy] = await Promise.all([this.repos.machines.byId(rep.machineId), this.repos.sites.byId(rep.targetSiteId), this.repos.sites.byId(rep.sourceSiteId), this.repos.policies.byId(rep.policyId)]);
      return { scope: 'replication', subject: rep.name, target, source, machines: [machine], replications: [rep], policy };
    });
  }

  /** Before enable replication: the machine as it would be replicated to `target` under `policy`. */
  forEnable(vault: Vault, machine: Machine, target: Site, policy: Policy, o: CheckOptions): Promise<ReadinessReport> {
    return this.run(vault, o, async () => ({ scope: 'machine', subject: machine.name, target, source: await this.repos.sites.byId(machine.siteId), machines: [machine], replications: [], policy }));
  }

  forPlan(vault: Vault, plan: RecoveryPlan, o: CheckOptions): Promise<ReadinessReport> {
    return this.run(vault, o, async () => {
      const names = plan.groups.flatMap((g) => g.replications);
      const reps = await this.repos.replications.list(vault.id, { names });
      const first = reps[0];
      if (!first) throw new RefugeError('failed_precondition', `recovery plan '${plan.name}' has no replications to check`);
      const machines = await this.repos.machines.byIds(reps.map((r) => r.machineId));
      return { scope: 'plan', subject: plan.name, target: await this.repos.sites.byId(first.targetSiteId), source: await this.repos.sites.byId(first.sourceSiteId), machines, replications: reps };
    });
  }

  forSite(vault: Vault, site: Site, o: CheckOptions): Promise<ReadinessReport> {
    return this.run(vault, o, async () => ({ scope: 'site', subject: site.name, target: site, machines: [], replications: [] }));
  }

  /** Lets an operation go ahead: passes or warns; a fail throws unless an owner overrides it with a reason. */
  async gate(report: ReadinessReport, principal: Principal | null, override?: { reason: string }): Promise<ReadinessReport> {
    if (report.worst !== 'fail') return report;
    const failed = report.results.filter((r) => r.status === 'fail');
    if (!override) {
      throw new RefugeError('failed_precondition', `readiness check failed: ${failed.map((f) => `${f.check}: ${f.message}`).join('; ')}`, {
        hint: failed.map((f) => f.remediation).filter(Boolean).join('; ') + '; an owner may override with a reason',
        details: { readinessReport: report.id, failedChecks: failed },
      });
    }
    if (principal?.role !== 'owner') throw new RefugeError('permission_denied', 'only an owner may override a failed readiness check');
    const recorded = { by: principal.name, reason: override.reason };
    await this.db.updateTable('readinessReports').set({ overrideJson: JSON.stringify(recorded) }).where('id', '=', report.id).execute();
    await this.monitoring?.events.record({ vaultId: report.vaultId, type: 'readiness.overridden', severity: 'warning', subject: report.subject, message: `${principal.name} overrode failed checks (${failed.map((f) => f.check).join(', ')}): ${override.reason}`, details: { report: report.id } });
    return { ...report, override: recorded };
  }

  /** Checks every replication of every vault; alerts when a result worsens (capacity shortfalls get their own). */
  async runPeriodic(): Promise<number> {
    let worsened = 0;
    for (const vault of await this.repos.vaults.list()) {
      for (const rep of await this.repos.replications.list(vault.id)) {
        const previous = (await this.list(vault.id, { scope: 'replication', subject: rep.name, limit: 1 }))[0];
        const report = await this.forReplication(vault, rep, { trigger: 'periodic', principal: null, permission: 'read' });
        const capacity = report.results.find((r) => r.check === 'target-capacity');
        if (this.monitoring) {
          const { alerts } = this.monitoring;
          if (capacity?.status === 'fail') await alerts.raise(vault.id, { kind: 'capacity-shortfall', subject: rep.name, severity: 'critical', message: capacity.message });
          else await alerts.resolve(vault.id, 'capacity-shortfall', rep.name);
          const worse = previous && statusRank(report.worst) > statusRank(previous.worst);
          if (worse) {
            worsened++;
            const changed = report.results.filter((r) => statusRank(r.status) > statusRank(previous.results.find((p) => p.check === r.check)?.status ?? 'pass'));
            await alerts.raise(vault.id, { kind: 'readiness-worsened', subject: rep.name, severity: report.worst === 'fail' ? 'critical' : 'warning', message: changed.map((c) => `${c.check} ${c.status}: ${c.message}`).join('; '), details: { report: report.id } });
          } else if (report.worst === 'pass') {
            await alerts.resolve(vault.id, 'readiness-worsened', rep.name);
          }
        }
      }
    }
    return worsened;
  }

  async list(vaultId: string, f: { scope?: ReadinessScope; subject?: string; limit?: number; before?: string } = {}): Promise<ReadinessReport[]> {
    let q = this.db.selectFrom('readinessReports').selectAll().where('vaultId', '=', vaultId);
    if (f.scope) q = q.where('scope', '=', f.scope);
    if (f.subject) q = q.where('subject', '=', f.subject);
    if (f.before) q = q.where('id', '<', f.before);
    return (await q.orderBy('id', 'desc').limit(f.limit ?? 50).execute()).map(toReport);
  }

  async get(vaultId: string, id: string): Promise<ReadinessReport> {
    const r = await this.db.selectFrom('readinessReports').selectAll().where('vaultId', '=', vaultId).where('id', '=', id).executeTakeFirst();
    if (!r) throw notFound('readiness report', id);
    return toReport(r);
  }

  private async run(vault: Vault, o: CheckOptions, scopeOf: () => Promise<Scope>): Promise<ReadinessReport> {
    const s = await scopeOf();
    const now = new Date();
    const siteReplications = await this.repos.replications.list(vault.id, { targetSiteId: s.target.id });
    const siteMachines = new Map((await this.repos.machines.byIds([...new Set(siteReplications.map((r) => r.machineId))])).map((m) => [m.id, m]));
    const since = new Date(now.getTime() - 3600_000).toISOString();
    const recentPoints = (await Promise.all(s.replications.map((r) => this.repos.replications.pointsSince(r.id, since)))).flat().sort((a, b) => a.capturedAt.localeCompare(b.capturedAt));
    const sites = new Map((await this.repos.sites.list(vault.id)).map((x) => [x.id, x.name]));
    const input: CheckInput = {
      vault,
      principal: o.principal,
      permission: o.permission,
      trigger: o.trigger,
      target: s.target,
      source: s.source,
      machines: s.machines,
      replications: s.replications,
      policy: s.policy,
      recentPoints,
      siteReplications,
      siteMachines,
      mappings: await this.repos.mappings.list(vault.id, { targetSiteId: s.target.id }),
      env: this.env,
      now,
    };
    const all: Record<CheckName, () => CheckResult> = {
      account: () => accountCheck(input),
      'vault-location': () => vaultLocationCheck(input, (id) => sites.get(id) ?? id),
      'target-capacity': () => targetCapacityCheck(input),
      'storage-scalability': () => storageScalabilityCheck(input),
      networking: () => networkingCheck(input),
      certificates: () => certificatesCheck(input),
      'support-matrix': () => supportMatrixCheck(input),
    };
    const wanted = CHECKS_FOR[o.trigger];
    const results = (Object.keys(all) as CheckName[]).filter((c) => wanted === 'all' || wanted.includes(c)).map((c) => all[c]());
    const worst = results.reduce<CheckStatus>((w, r) => (statusRank(r.status) > statusRank(w) ? r.status : w), 'pass');
    const report: ReadinessReport = { id: newId('ready'), vaultId: vault.id, scope: s.scope, subject: s.subject, trigger: o.trigger, createdAt: now.toISOString(), worst, results, override: null };
    await this.db
      .insertInto('readinessReports')
      .values({ id: report.id, vaultId: vault.id, scope: report.scope, subject: report.subject, trigger: report.trigger, createdAt: report.createdAt, worst, resultsJson: JSON.stringify(results), overrideJson: null })
      .execute();
    return report;
  }
}

const toReport = (r: { id: string; vaultId: string; scope: string; subject: string; trigger: string; createdAt: string; worst: string; resultsJson: string; overrideJson: string | null }): ReadinessReport => ({
  id: r.id,
  vaultId: r.vaultId,
  scope: r.scope as ReadinessScope,
  subject: r.subject,
  trigger: r.trigger as ReadinessTrigger,
  createdAt: r.createdAt,
  worst: r.worst as CheckStatus,
  results: JSON.parse(r.resultsJson) as CheckResult[],
  override: r.overrideJson ? (JSON.parse(r.overrideJson) as ReadinessReport['override']) : null,
});
