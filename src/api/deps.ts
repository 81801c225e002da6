import type { Logger } from '../core/log.js';
import type { VaultMetrics } from './metrics.js';
import type { OperationService } from '../orchestration/operations.js';
import type { SiteResources } from '../orchestration/site-resources.js';
import type { Replicator } from '../replicator/replicator.js';
import type { JobEngine } from '../vault/jobs/engine.js';
import type { VaultRepositories } from '../vault/repositories/index.js';
import type { AuditRepository } from '../vault/security/audit.js';
import type { UserRepository } from '../vault/security/users.js';
import type { AgentIdentityRepository } from '../vault/security/agent-identities.js';
import type { KeyPair } from '../vault/security/pki.js';
import type { AlertChannelRepository, AlertRepository } from '../vault/monitoring/alerts.js';
import type { EventRepository } from '../vault/monitoring/events.js';
import type { Monitor } from '../vault/monitoring/monitor.js';
import type { Notifier } from '../vault/monitoring/notifier.js';
import type { ReadinessService } from '../vault/readiness/service.js';
import type { ReplicatorRegistry } from './replicator-registry.js';
import type { GroupCutCoordinator } from '../vault/group-cuts.js';
import type { PlanService } from '../orchestration/plans/plan-service.js';
import type { DrillService } from '../orchestration/drills/drill-service.js';

/** Everything the HTTP layer calls into; assembled by server.ts (or by tests). */
export interface AppDeps {
  repos: VaultRepositories;
  engine: JobEngine;
  operations: OperationService;
  replicator: Replicator;
  sites: SiteResources;
  /** The vault's data folder; new sites get their default layout under it. */
  dataDir: string;
  /** The URL agents use to reach the vault's own replicator (this process's /replicator/v1). */
  replicatorUrl(): string;
  users: UserRepository;
  metrics: VaultMetrics;
  readiness: ReadinessService;
  monitoring: { events: EventRepository; alerts: AlertRepository; channels: AlertChannelRepository; notifier: Notifier; monitor: Monitor };
  audit: AuditRepository;
  /** The server's certificate and key (HTTPS); absent only when the vault was started with --insecure-http. */
  tls: { certPem: string; keyPem: string; caPem: string } | null;
  /** The CA that issues agents' and replicators' client certificates (the vault CA when the vault has its key). */
  issuingCa: KeyPair;
  /** SHA-256 fingerprint of the CA the vault's HTTPS certificate chains to (registration credentials carry it). */
  caFingerprint256: string;
  /** Registration keys and the client certificates issued for them. */
  identities: AgentIdentityRepository;
  /** Why the agent certificate with this fingerprint may not send data for `machine`'s replication, or undefined. */
  agentRefusal(fingerprint256: string, machine: { id: string; name: string; vaultId: string }): Promise<string | undefined>;
  /** Standalone replicators serving sites; agents of a site that has a live one are sent there instead. */
  replicators: ReplicatorRegistry;
  /** Consistency-group cuts; routes make an unscheduled one over `repos` when absent (tests). */
  groupCuts?: GroupCutCoordinator;
  /** Recovery plan runs and dry-runs; drills and their schedule. */
  plans: PlanService;
  drills: DrillService;
  log: Logger;
}
