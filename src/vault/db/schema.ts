/**
 * The vault's tables as Kysely sees them (camelCase here, snake_case in the database through CamelCasePlugin).
 * Times are ISO-8601 UTC strings in every dialect, so they compare and sort as text; JSON columns are text.
 */

export interface VaultTable {
  id: string;
  name: string;
  /** The site the vault lives at (ASR recommends the recovery region); null until set. */
  locationSiteId: string | null;
  createdAt: string;
}

export interface SiteTable {
  id: string;
  vaultId: string;
  name: string;
  /** Fabric provider kind: 'qemu' (built in). */
  provider: string;
  /** JSON: provider settings ({ workDir }) and replica store settings ({ store: { kind, path } }). */
  configJson: string;
  /** JSON: { vcpus, memoryMiB, diskGiB } the site can give to recovered machines. */
  capacityJson: string;
  /** JSON: [{ name, cidr?, addresses }]: the site's networks and how many addresses each can give. */
  networksJson: string;
  /** JSON: { storeThroughputMiBps?, linkThroughputMiBps? }: what the site's store and link can take. */
  limitsJson: string;
  createdAt: string;
}

export interface MachineTable {
  id: string;
  vaultId: string;
  name: string;
  /** The site the machine was registered at. */
  siteId: string;
  hostname: string;
  os: string;
  cpus: number;
  memoryMib: number;
  disksJson: string;
  bootJson: string;
  agentVersion: string;
  lastHeartbeatAt: string | null;
  lastAgentError: string | null;
  /** JSON: [{ name, network, ipv4? }]. */
  nicsJson: string;
  /** JSON AgentReport: reachability, TLS trust and clock as the agent last saw them. */
  agentReportJson: string | null;
  /** JSON HostFacts: OS, kernel, CPU, memory, agent version and disks, from the agent's latest heartbeat. */
  hostFactsJson: string | null;
  createdAt: string;
}

export interface PolicyTable {
  id: string;
  vaultId: string;
  name: string;
  crashIntervalSeconds: number;
  retentionHours: number;
  rpoThresholdSeconds: number;
  appIntervalSeconds: number | null;
  bandwidthMibps: number | null;
  chunkSizeKib: number | null;
  createdAt: string;
}

export interface ReplicationTable {
  id: string;
  vaultId: string;
  /** Same as the machine's name: one replication per machine. */
  name: string;
  machineId: string;
  policyId: string;
  sourceSiteId: string;
  targetSiteId: string;
  state: string;
  testFailoverState: string;
  /** The job currently operating on this replication; at most one at a time. */
  activeJobId: string | null;
  /** JSON ReplicationProgress from the agent's last heartbeat. */
  progressJson: string | null;
  /** JSON: what the last failover / test failover started (machine names, point used), for cleanup and commit. */
  failoverJson: string | null;
  groupId: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface RecoveryPointTable {
  id: string;
  replicationId: string;
  parentId: string | null;
  capturedAt: string;
  committedAt: string;
  consistency: string;
  changedBytes: number;
  storedBytes: number;
  /** The consistency-group cut this point is part of; set only once every member's point of that cut exists. */
  groupCutId: string | null;
  /** JSON: `[{ name, changedBytes }]`, the point's churn per disk; null when not reported (older points). */
  diskChurn: string | null;
}

export interface GroupCutTable {
  id: string;
  vaultId: string;
  groupId: string;
  /** open, complete or failed. */
  state: string;
  /** The group's id while open (unique: one open cut per group), null once resolved. */
  openKey: string | null;
  /** schedule or manual (who opened it). */
  trigger: string;
  openedAt: string;
  /** Every member must be prepared, then paused, by this time. */
  barrierDeadline: string;
  /** Once every member is prepared, how long they may take to pause. */
  pauseSeconds: number;
  /** Every member's point must be recorded by this time. */
  commitDeadline: string;
  pausedAt: string | null;
  resolvedAt: string | null;
  reason: string | null;
}

export interface GroupCutMemberTable {
  cutId: string;
  replicationId: string;
  /** pending, prepared, paused, cut or failed. */
  phase: string;
  pointId: string | null;
  error: string | null;
  updatedAt: string;
}

export interface JobTable {
  id: string;
  vaultId: string;
  type: string;
  replicationId: string | null;
  state: string;
  paramsJson: string;
  resultJson: string;
  errorJson: string | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /** The process running (or that last ran) the job, and until when its claim holds unless renewed. */
  leaseOwner: string | null;
  leaseExpiresAt: string | null;
  /** 1 once someone asked to cancel; the running process aborts the job at its next check. */
  cancelRequested: number;
  /** How many times a process claimed the job (1 unless it was resumed after a crash or restarted). */
  attempts: number;
  requestedBy: string | null;
}

export interface JobTaskTable {
  jobId: string;
  seq: number;
  name: string;
  state: string;
  progress: number;
  message: string | null;
  startedAt: string | null;
  endedAt: string | null;
  /** JSON answer given to a task waiting for input. */
  inputJson: string | null;
  attempts: number;
}

export interface UserTable {
  id: string;
  name: string;
  passwordHash: string;
  role: string;
  disabled: number;
  createdAt: string;
}

export interface TokenTable {
  id: string;
  userId: string | null;
  name: string;
  secretHash: string;
  /** 'session' (from a login, expires), 'api' (long-lived), 'agent' (agent routes of one vault only). */
  kind: string;
  role: string;
  vaultId: string | null;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

/** A one-time key an owner or contributor created for registering one agent or replicator (SHA-256 stored). */
export interface RegistrationKeyTable {
  id: string;
  vaultId: string;
  secretHash: string;
  createdBy: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
  /** What redeemed it: `machine:<name>` or `replicator:<site>`. */
  usedBy: string | null;
}

/** A client certificate the vault CA issued: to an agent (kind machine) or a standalone replicator (kind replicator). */
export interface AgentCertificateTable {
  id: string;
  vaultId: string;
  kind: string;
  /** The machine name (kind machine) or the site name (kind replicator). */
  name: string;
  siteId: string;
  /** Set when the agent first registers its machine; the certificate dies with that machine. */
  machineId: string | null;
  fingerprint256: string;
  notAfter: string;
  revokedAt: string | null;
  createdAt: string;
}

export interface AuditTable {
  id: string;
  at: string;
  principal: string;
  role: string | null;
  action: string;
  vault: string | null;
  target: string | null;
  status: number;
  detailsJson: string;
}

interface Named {
  id: string;
  vaultId: string;
  name: string;
  createdAt: string;
}
export type ConsistencyGroupTable = Named;
export interface NetworkMappingTable extends Named {
  sourceSiteId: string;
  sourceNetwork: string;
  targetSiteId: string;
  targetNetwork: string;
  testNetwork: string | null;
}
export interface RecoveryPlanTable extends Named {
  description: string;
  groupsJson: string;
  updatedAt: string;
}
export interface AlertChannelTable extends Named {
  kind: string;
  configJson: string;
  minSeverity: string;
}
export interface EventTable {
  id: string;
  vaultId: string;
  at: string;
  type: string;
  severity: string;
  subject: string | null;
  message: string;
  detailsJson: string;
}
export interface AlertTable {
  id: string;
  vaultId: string;
  kind: string;
  subject: string;
  severity: string;
  state: string;
  message: string;
  activeKey: string | null;
  firstAt: string;
  lastAt: string;
  resolvedAt: string | null;
  detailsJson: string;
}
export interface NotificationTable {
  id: string;
  alertId: string;
  channelId: string;
  transition: string;
  state: string;
  attempts: number;
  nextAttemptAt: string;
  lastError: string | null;
  createdAt: string;
  sentAt: string | null;
}
export interface ReadinessReportTable {
  id: string;
  vaultId: string;
  scope: string;
  subject: string;
  trigger: string;
  createdAt: string;
  worst: string;
  resultsJson: string;
  overrideJson: string | null;
}
export interface DrillTable {
  id: string;
  vaultId: string;
  name: string;
  subjectKind: string;
  subject: string;
  intervalSeconds: number | null;
  nextRunAt: string | null;
  enabled: number;
  probeJson: string;
  createdAt: string;
  updatedAt: string;
}
export interface DrillRunTable {
  id: string;
  drillId: string;
  vaultId: string;
  subjectKind: string;
  subject: string;
  jobId: string;
  trigger: string;
  startedAt: string;
  endedAt: string | null;
  outcome: string;
  rtoSeconds: number | null;
  cleanedUp: number;
  detailsJson: string;
  error: string | null;
}

export interface Database {
  vaults: VaultTable;
  sites: SiteTable;
  machines: MachineTable;
  policies: PolicyTable;
  replications: ReplicationTable;
  recoveryPoints: RecoveryPointTable;
  jobs: JobTable;
  jobTasks: JobTaskTable;
  users: UserTable;
  tokens: TokenTable;
  registrationKeys: RegistrationKeyTable;
  agentCertificates: AgentCertificateTable;
  auditLog: AuditTable;
  consistencyGroups: ConsistencyGroupTable;
  networkMappings: NetworkMappingTable;
  recoveryPlans: RecoveryPlanTable;
  alertChannels: AlertChannelTable;
  events: EventTable;
  alerts: AlertTable;
  notifications: NotificationTable;
  readinessReports: ReadinessReportTable;
  groupCuts: GroupCutTable;
  groupCutMembers: GroupCutMemberTable;
  drills: DrillTable;
  drillRuns: DrillRunTable;
}
