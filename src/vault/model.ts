import type { AgentReport, BootSpec, DiskFacts, HostFacts, ReplicationProgress } from '../protocol/schemas.js';
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

/** A network at a site and how many addresses it can hand to recovered machines. */
export interface SiteNetwork {
  name: string;
  cidr?: string;
  addresses: number;
}

/** What the site's replica store and the link into the site can take (MiB/s); unset: not limited. */
export interface SiteLimits {
  storeThroughputMiBps?: number;
  linkThroughputMiBps?: number;
}

export const FABRIC_KINDS = ['qemu', 'libvirt', 'command'] as const;
export type FabricKind = (typeof FABRIC_KINDS)[number];

/**
 * The settings of a site's fabric provider (its kind is `Site.provider`): qemu (binary, accelerator), libvirt
 * (connection URI, domain name prefix) or command (hook executables and their timeout; contract in
 * src/fabric/command/README.md). Unset: the kind's defaults.
 */
export interface SiteFabricSettings {
  qemuBinary?: string;
  accelerator?: 'kvm' | 'tcg' | 'auto';
  libvirtUri?: string;
  domainPrefix?: string;
  hooks?: { start: string; status: string; stop: string; delete: string; console?: string };
  hookTimeoutSeconds?: number;
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
  /** The fabric provider's settings (the provider kind is the site's `provider`). */
  fabric?: SiteFabricSettings;
}

export interface Site {
  id: string;
  vaultId: string;
  name: string;
  provider: FabricKind;
  config: SiteConfig;
  capacity: SiteCapacity;
  networks: SiteNetwork[];
  limits: SiteLimits;
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
  nics: MachineNic[];
  agentReport: (AgentReport & { clockSkewSeconds?: number; receivedAt?: string }) | null;
  /** The agent's host (OS, kernel, CPU, memory, agent version, disks) from its latest heartbeat; null before one. */
  hostFacts: HostFacts | null;
  createdAt: string;
}

export interface MachineNic {
  name: string;
  network: string;
  ipv4?: string;
}

export interface Policy {
  id: string;
  vaultId: string;
  name: string;
  crashIntervalSeconds: number;
  retentionHours: number;
  rpoThresholdSeconds: number;
  /** App-consistent points every this many seconds; null: off (ASR's default). */
  appIntervalSeconds: number | null;
  /** Upload limit per replication, MiB/s; null: unlimited. */
  bandwidthMiBps: number | null;
  /** Chunk size of its replications in KiB (a power of two, 4 to 1024); null: the target store's. Fixed at creation. */
  chunkSizeKiB: number | null;
  createdAt: string;
}

/** The chunk size a replication under `policy` ships and stores in, in a store whose own default is `storeChunkSize`. */
export const replicationChunkSize = (policy: Pick<Policy, 'chunkSizeKiB'>, storeChunkSize: number): number =>
  policy.chunkSizeKiB !== null ? policy.chunkSizeKiB * 1024 : storeChunkSize;

/** Chunk sizes a policy may choose, in KiB: powers of two from 4 KiB (a block) to 1 MiB (the upload body limit's share). */
export const POLICY_CHUNK_SIZES_KIB = [4, 8, 16, 32, 64, 128, 256, 512, 1024] as const;

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
  /** How the disks were provided: instant (served from the store, hydrated in the background) or restore-first. */
  mode?: 'instant' | 'restore-first';
  /** Instant recovery: when the machine was switched onto its local disks (unset while it still hydrates). */
  hydratedAt?: string;
  /** The recovered machine's network cards: target network and the address it got (kept, or the next free one). */
  nics?: { network: string; ipv4?: string; requestedIpv4?: string }[];
  /** Planned failovers stop the source first and fail over to a final point shipped after the stop. */
  planned?: boolean;
  /**
   * Where the machine ran before this failover, with its disk images there: what a re-protect seeds the reverse
   * direction from (hashed where they lie, so only differences travel).
   */
  formerSource?: { siteId: string; disks: { name: string; path: string }[] };
}

/**
 * What operations keep on a replication beside its status (one JSON column): the running or last failover and
 * test failover, and the re-protect, resync and planned-failover markers the heartbeat passes to the agent.
 */
export interface OperationRecords {
  test?: FailoverRecord;
  failover?: FailoverRecord;
  /** The site the machine was first protected from; set by the first re-protect. */
  homeSiteId?: string;
  /** The point a re-protect seeded from the former source's disks: the parent of the first point in the new direction. */
  seedPointId?: string;
  /** Set once a re-protect has seeded and reversed the replication: the agent at the new source may ship. */
  reprotectShipping?: boolean;
  /** The agent compares every chunk for its next point if its last point was captured before this instant. */
  resyncAfter?: string;
  /** The agent cuts a point at once if its last point was captured before this instant (a planned failover's final point). */
  cutAfter?: string;
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
  failover: OperationRecords;
  /** Re-protected: replicating from the former recovery site back to the machine's home site. */
  reversed: boolean;
  /** The consistency group whose points are cut together with this one's, if any. */
  groupId: string | null;
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
  /** The consistency-group cut whose instant this point shares with the group's other members (multi-machine). */
  groupCutId: string | null;
  /** The bytes this point changed on each disk since its parent; null when its replicator did not report them. */
  diskChurn: DiskChurn[] | null;
}

export interface DiskChurn {
  name: string;
  changedBytes: number;
}

export type { Operation };

export interface ConsistencyGroup {
  id: string;
  vaultId: string;
  name: string;
  createdAt: string;
}

/** Source network at one site -> target network at another, plus the isolated network test failovers use. */
export interface NetworkMapping {
  id: string;
  vaultId: string;
  name: string;
  sourceSiteId: string;
  sourceNetwork: string;
  targetSiteId: string;
  targetNetwork: string;
  testNetwork: string | null;
  createdAt: string;
}

export const PLAN_ACTION_KINDS = ['script', 'webhook', 'manual'] as const;
export type PlanActionKind = (typeof PLAN_ACTION_KINDS)[number];

/** A pre or post action of a recovery plan group. Orchestrating plans is the failover orchestration's (issue 6). */
export interface PlanAction {
  name: string;
  kind: PlanActionKind;
  /** script: command line; webhook: URL; manual: the instruction shown while the plan waits for approval. */
  target: string;
  timeoutSeconds?: number;
  /** script: the site it acts on, `recovery` (default) or `primary` (see src/orchestration/plans/README.md). */
  site?: 'primary' | 'recovery';
}

export interface PlanGroup {
  name: string;
  /** Replication names failed over in parallel within the group. */
  replications: string[];
  pre: PlanAction[];
  post: PlanAction[];
}

export interface RecoveryPlan {
  id: string;
  vaultId: string;
  name: string;
  description: string;
  groups: PlanGroup[];
  createdAt: string;
  updatedAt: string;
}
