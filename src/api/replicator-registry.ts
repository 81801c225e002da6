import type { ReplicationStats, StoreFull } from '../protocol/replicator-vault.js';

export interface RegisteredReplicator {
  vaultId: string;
  siteId: string;
  site: string;
  url: string;
  version: string;
  reportedAt: Date;
  replications: ReplicationStats[];
  storeFull?: StoreFull | null;
}

/**
 * The standalone replicators (`refuge replicator`) serving sites, as they last reported themselves. Kept in memory:
 * a replicator reports every `reportIntervalSeconds`, so after a vault restart the registry refills within one
 * interval, and meanwhile agents use the vault's own replicator (which commits to the same store). A replicator
 * that missed three reports counts as gone.
 */
export class ReplicatorRegistry {
  private readonly bySite = new Map<string, RegisteredReplicator>();

  constructor(readonly reportIntervalSeconds = 10) {}

  /** Records `r`; returns the site's previous report, if this process has one. */
  report(r: RegisteredReplicator): RegisteredReplicator | undefined {
    const previous = this.bySite.get(r.siteId);
    this.bySite.set(r.siteId, r);
    return previous;
  }

  isLive(r: RegisteredReplicator, now = new Date()): boolean {
    return now.getTime() - r.reportedAt.getTime() <= 3 * this.reportIntervalSeconds * 1000;
  }

  /** The URL agents replicating to `siteId` should use: a live standalone replicator's, if there is one. */
  urlFor(siteId: string): string | undefined {
    const r = this.bySite.get(siteId);
    return r && this.isLive(r) ? r.url : undefined;
  }

  list(vaultId: string): RegisteredReplicator[] {
    return [...this.bySite.values()].filter((r) => r.vaultId === vaultId).sort((a, b) => a.site.localeCompare(b.site));
  }
}
