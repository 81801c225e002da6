import type { Selectable } from 'kysely';
import type { MachineTable, PolicyTable, ReplicationTable, SiteTable, RecoveryPointTable } from '../db/schema.js';
import type { DiskChurn, Machine, Policy, RecoveryPoint, Replication, Site } from '../model.js';
import type { ReplicationState, TestFailoverState } from '../replication-state.js';

/** Row <-> domain conversions, in one place so JSON columns are parsed the same way everywhere. */

export const toSite = (r: Selectable<SiteTable>): Site => ({
  id: r.id,
  vaultId: r.vaultId,
  name: r.name,
  provider: r.provider as Site['provider'],
  config: JSON.parse(r.configJson) as Site['config'],
  capacity: JSON.parse(r.capacityJson) as Site['capacity'],
  networks: JSON.parse(r.networksJson) as Site['networks'],
  limits: JSON.parse(r.limitsJson) as Site['limits'],
  createdAt: r.createdAt,
});

export const toMachine = (r: Selectable<MachineTable>): Machine => ({
  id: r.id,
  vaultId: r.vaultId,
  name: r.name,
  siteId: r.siteId,
  hostname: r.hostname,
  os: r.os,
  cpus: r.cpus,
  memoryMiB: r.memoryMib,
  disks: JSON.parse(r.disksJson) as Machine['disks'],
  boot: JSON.parse(r.bootJson) as Machine['boot'],
  agentVersion: r.agentVersion,
  lastHeartbeatAt: r.lastHeartbeatAt,
  lastAgentError: r.lastAgentError,
  nics: JSON.parse(r.nicsJson) as Machine['nics'],
  agentReport: r.agentReportJson ? (JSON.parse(r.agentReportJson) as Machine['agentReport']) : null,
  hostFacts: r.hostFactsJson ? (JSON.parse(r.hostFactsJson) as Machine['hostFacts']) : null,
  createdAt: r.createdAt,
});

const isReversed = (json: string | null, sourceSiteId: string): boolean => {
  const home = json ? (JSON.parse(json) as Replication['failover']).homeSiteId : undefined;
  return home !== undefined && home !== sourceSiteId;
};

export const toReplication = (r: Selectable<ReplicationTable>): Replication => ({
  id: r.id,
  vaultId: r.vaultId,
  name: r.name,
  machineId: r.machineId,
  policyId: r.policyId,
  sourceSiteId: r.sourceSiteId,
  targetSiteId: r.targetSiteId,
  state: r.state as ReplicationState,
  testFailoverState: r.testFailoverState as TestFailoverState,
  activeJobId: r.activeJobId,
  progress: r.progressJson ? (JSON.parse(r.progressJson) as Replication['progress']) : null,
  failover: r.failoverJson ? (JSON.parse(r.failoverJson) as Replication['failover']) : {},
  reversed: isReversed(r.failoverJson, r.sourceSiteId),
  groupId: r.groupId,
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
});

export const toPolicy = (r: Selectable<PolicyTable>): Policy => ({
  id: r.id,
  vaultId: r.vaultId,
  name: r.name,
  crashIntervalSeconds: r.crashIntervalSeconds,
  retentionHours: r.retentionHours,
  rpoThresholdSeconds: r.rpoThresholdSeconds,
  appIntervalSeconds: r.appIntervalSeconds,
  bandwidthMiBps: r.bandwidthMibps,
  chunkSizeKiB: r.chunkSizeKib,
  createdAt: r.createdAt,
});

export const toPoint = (r: Selectable<RecoveryPointTable>): RecoveryPoint => ({
  id: r.id,
  replicationId: r.replicationId,
  parentId: r.parentId,
  capturedAt: r.capturedAt,
  committedAt: r.committedAt,
  consistency: r.consistency as RecoveryPoint['consistency'],
  changedBytes: Number(r.changedBytes),
  storedBytes: Number(r.storedBytes),
  groupCutId: r.groupCutId ?? null,
  diskChurn: r.diskChurn ? (JSON.parse(r.diskChurn) as DiskChurn[]) : null,
});
