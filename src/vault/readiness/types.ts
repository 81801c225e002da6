import type { Machine, NetworkMapping, Policy, RecoveryPoint, Replication, Site, Vault } from '../model.js';
import type { CertificateFacts } from '../security/pki.js';
import type { Permission, Principal } from '../security/roles.js';

/** The seed's prerequisites as automatic checks (product.md), in the order they are reported. */
export const CHECKS = ['account', 'vault-location', 'target-capacity', 'storage-scalability', 'networking', 'certificates', 'support-matrix'] as const;
export type CheckName = (typeof CHECKS)[number];

export const CHECK_STATUSES = ['pass', 'warning', 'fail'] as const;
export type CheckStatus = (typeof CHECK_STATUSES)[number];
export const statusRank = (s: CheckStatus): number => CHECK_STATUSES.indexOf(s);

/** One check's verdict: a one-line message with the measured value, the measurements, and what to do about it. */
export interface CheckResult {
  check: CheckName;
  status: CheckStatus;
  message: string;
  measured: Record<string, unknown>;
  remediation: string | null;
}

export const SCOPES = ['replication', 'machine', 'plan', 'site'] as const;
export type ReadinessScope = (typeof SCOPES)[number];
export const TRIGGERS = ['on-demand', 'enable', 'test-failover', 'failover', 'periodic'] as const;
export type ReadinessTrigger = (typeof TRIGGERS)[number];

export interface ReadinessReport {
  id: string;
  vaultId: string;
  scope: ReadinessScope;
  subject: string;
  trigger: ReadinessTrigger;
  createdAt: string;
  worst: CheckStatus;
  results: CheckResult[];
  /** An owner's decision to go ahead despite a failed check, and why. */
  override: { by: string; reason: string } | null;
}

/** What the vault process knows of itself that the checks need (its certificate, key, endpoints). */
export interface ReadinessEnvironment {
  certificate(): CertificateFacts | undefined;
  /** Whether the vault's encryption key is present and readable, and where it is expected. */
  encryptionKey(): { present: boolean; path: string; /** File mode bits, when present. */ mode?: number };
  /** The URLs agents use for the vault API and the replicator (for the outbound allow-list). */
  endpoints(): { vault: string; replicator: string };
}

/** Everything one evaluation reads, gathered once. */
export interface CheckInput {
  vault: Vault;
  principal: Principal | null;
  /** The permission the operation being checked needs (`read` for an on-demand check). */
  permission: Permission;
  trigger: ReadinessTrigger;
  target: Site;
  source: Site | undefined;
  /** The machines that would fail over to `target` in this scope (one for a replication, all for a plan). */
  machines: Machine[];
  replications: Replication[];
  policy: Policy | undefined;
  /** Points of the replications in scope over the last hour, for churn. */
  recentPoints: RecoveryPoint[];
  /** Everything that targets `target` (for the site-wide capacity demand) and its machines. */
  siteReplications: Replication[];
  siteMachines: Map<string, Machine>;
  mappings: NetworkMapping[];
  env: ReadinessEnvironment;
  now: Date;
}

export const result = (check: CheckName, status: CheckStatus, message: string, measured: Record<string, unknown> = {}, remediation: string | null = null): CheckResult => ({
  check,
  status,
  message,
  measured,
  remediation: status === 'pass' ? null : remediation,
});
