import type { BootSpec, DiskFacts, ReplicationProgress } from '../protocol/schemas.js';
import type { Operation, ReplicationState, TestFailoverState } from './replication-state.js';
import type { StoreLocation } from '../store/backends/open-backend.js';

/** The vault's domain objects, as repositories return them (JSON columns parsed, ids resolved). */

export interface Vault {
  id: string;
  name: string;
  locationSiteId: string | null;
  createdAt: string;
}

export interface SiteCapacity {
  vcpus: number;
  memoryMiB: number;
  diskGiB: number;
}

export interface SiteConfig {
  /** Where the site's fabric provider keeps its machines (pid files, consoles). */
  workDir: string;
  /** Where recovered disk images of machines started at this site are written. */
  disksDir: string;
  /**
   * The site's replica store (replications targeting this site keep their points here): a folder, an S3 bucket or
   * an Azure Blob container; with `encryptionKeyFile`, a new store is encrypted under that vault key.
   */
  store: StoreLocation & { encryptionKeyFile?: string };
}

export interface Site {
  id: string;
  vaultId: string;
  name: string;
  provider: 'qemu';
  config: SiteConfig;
  capacity: SiteCapacity;
  createdAt: string;
}

export interface Machine {
  id: string;
  vaultId: string;
  name: string;
  siteId: string;
  hostname: string;
  os: string;
  cpus: number;
  memoryMiB: number;
  disks: DiskFacts[];
  boot: BootSpec;
  agentVersion: string;
  lastHeartbeatAt: string | null;
  lastAgentError: string | null;
  createdAt: string;
}

export interface Policy {
  id: string;
  vaultId: string;
  name: string;
  crashIntervalSeconds: number;
  retentionHours: number;
  rpoThresholdSeconds: number;
  createdAt: string;
}

/** What a failover or test failover started, kept so cleanup and commit know what to act on. */
export interface FailoverRecord {
  kind: 'test' | 'failover';
  pointId: string;
  pointCapturedAt: string;
  machineName: string;
  siteId: string;
  disks: string[];
  requestedAt: string;
  startedAt?: string;
}

export interface Replication {
  id: string;
  vaultId: string;
  name: string;
  machineId: string;
  policyId: string;
  sourceSiteId: string;
  targetSiteId: string;
  state: ReplicationState;
  testFailoverState: TestFailoverState;
  activeJobId: string | null;
  progress: ReplicationProgress | null;
  failover: { test?: FailoverRecord; failover?: FailoverRecord };
  createdAt: string;
  updatedAt: string;
}

export interface RecoveryPoint {
  id: string;
  replicationId: string;
  parentId: string | null;
  capturedAt: string;
  committedAt: string;
  consistency: 'crash' | 'app';
  changedBytes: number;
  storedBytes: number;
}

export type { Operation };
