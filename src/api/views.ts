import type { Machine, Policy, RecoveryPoint, Replication, Site, Vault } from '../vault/model.js';
import { allowedOperations } from '../vault/replication-state.js';
import { replicationHealth } from '../vault/health.js';

/** The API's representations of the vault's objects: names instead of internal ids, derived fields added. */

export type SiteNames = Map<string, string>;

export const vaultView = (v: Vault, sites: SiteNames) => ({
  id: v.id,
  name: v.name,
  location: v.locationSiteId ? (sites.get(v.locationSiteId) ?? null) : null,
  createdAt: v.createdAt,
});

export const siteView = (s: Site) => ({
  id: s.id,
  name: s.name,
  provider: s.provider,
  capacity: s.capacity,
  networks: s.networks,
  limits: s.limits,
  config: s.config,
  createdAt: s.createdAt,
});

export const machineView = (m: Machine, sites: SiteNames) => ({
  id: m.id,
  name: m.name,
  site: sites.get(m.siteId) ?? m.siteId,
  hostname: m.hostname,
  os: m.os,
  cpus: m.cpus,
  memoryMiB: m.memoryMiB,
  disks: m.disks,
  boot: m.boot,
  nics: m.nics,
  agent: { version: m.agentVersion, lastHeartbeatAt: m.lastHeartbeatAt, lastError: m.lastAgentError, report: m.agentReport, host: m.hostFacts },
  createdAt: m.createdAt,
});

export const policyView = (p: Policy) => ({
  id: p.id,
  name: p.name,
  crashIntervalSeconds: p.crashIntervalSeconds,
  retentionHours: p.retentionHours,
  rpoThresholdSeconds: p.rpoThresholdSeconds,
  appIntervalSeconds: p.appIntervalSeconds,
  bandwidthMiBps: p.bandwidthMiBps,
  chunkSizeKiB: p.chunkSizeKiB,
  createdAt: p.createdAt,
});

export const pointView = (p: RecoveryPoint) => ({
  id: p.id,
  capturedAt: p.capturedAt,
  committedAt: p.committedAt,
  consistency: p.consistency,
  changedBytes: p.changedBytes,
  storedBytes: p.storedBytes,
  groupCutId: p.groupCutId,
  diskChurn: p.diskChurn,
});

export function replicationView(
  r: Replication,
  ctx: { sites: SiteNames; machine: Machine; policy: Policy; latest: RecoveryPoint | undefined; now?: Date },
) {
  const now = ctx.now ?? new Date();
  const health = replicationHealth(r, ctx.machine, ctx.policy, ctx.latest, now);
  const siteName = (id: string) => ctx.sites.get(id) ?? id;
  return {
    id: r.id,
    name: r.name,
    machine: ctx.machine.name,
    policy: ctx.policy.name,
    sourceSite: siteName(r.sourceSiteId),
    targetSite: siteName(r.targetSiteId),
    state: r.state,
    testFailoverState: r.testFailoverState,
    activeJobId: r.activeJobId,
    allowedOperations: allowedOperations(r),
    health: health.health,
    healthErrors: health.errors,
    rpo: ctx.latest
      ? { seconds: (now.getTime() - Date.parse(ctx.latest.capturedAt)) / 1000, computedAt: now.toISOString(), latestPoint: pointView(ctx.latest) }
      : null,
    progress: r.progress,
    // The failover records (what a failover or test failover started), with site names; and the direction.
    failover: Object.fromEntries(
      (['test', 'failover'] as const).flatMap((k) => {
        const f = r.failover[k];
        return f ? [[k, { ...f, site: siteName(f.siteId) }]] : [];
      }),
    ),
    reversed: r.reversed,
    homeSite: r.failover.homeSiteId ? siteName(r.failover.homeSiteId) : siteName(r.sourceSiteId),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}
