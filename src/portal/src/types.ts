/** The API's representations, as far as the portal reads them (the OpenAPI document at /api/docs is complete). */

export interface Vault {
  name: string;
  location: string | null;
}

export interface Site {
  name: string;
  provider: string;
  capacity: { vcpus: number; memoryMiB: number; diskGiB: number };
  networks: { name: string }[];
}

export interface Machine {
  name: string;
  site: string;
  hostname: string;
  os: string;
  cpus: number;
  memoryMiB: number;
  disks: { name: string; sizeBytes: number }[];
  agent: { version: string | null; lastHeartbeatAt: string | null; lastError: string | null };
}

export interface Policy {
  name: string;
  crashIntervalSeconds: number;
  retentionHours: number;
  rpoThresholdSeconds: number;
}

export interface Point {
  id: string;
  capturedAt: string;
  committedAt: string;
  consistency: string;
  changedBytes: number;
  storedBytes: number;
  /** The bytes the point changed on each disk; null for points recorded before the vault kept it. */
  diskChurn: { name: string; changedBytes: number }[] | null;
}

export interface Replication {
  id: string;
  name: string;
  machine: string;
  policy: string;
  sourceSite: string;
  targetSite: string;
  state: string;
  testFailoverState: string;
  activeJobId: string | null;
  allowedOperations: string[];
  health: string;
  healthErrors: { code?: string; message: string }[];
  rpo: { seconds: number; latestPoint: Point } | null;
  progress: { phase: string; doneBytes: number; totalBytes: number; pendingBytes?: number } | null;
  group: string | null;
}

export interface Task {
  seq: number;
  name: string;
  state: string;
  progress: number;
  message: string | null;
  input: unknown;
  startedAt: string | null;
  endedAt: string | null;
}

export interface Job {
  id: string;
  type: string;
  replicationId: string | null;
  state: string;
  progress: number;
  params: unknown;
  result: Record<string, unknown>;
  error: { code: string; message: string; hint?: string } | null;
  tasks: Task[];
  allowedOperations: string[];
  createdAt: string;
  startedAt?: string | null;
  endedAt?: string | null;
}

export interface Alert {
  id: string;
  kind: string;
  subject: string;
  severity: string;
  state: string;
  message: string;
  lastAt: string;
}

export interface CheckResult {
  check: string;
  status: 'pass' | 'warning' | 'fail';
  message: string;
  remediation?: string | null;
}

export interface ReadinessReport {
  id: string;
  scope: string;
  subject: string;
  trigger: string;
  worst: 'pass' | 'warning' | 'fail';
  createdAt: string;
  results: CheckResult[];
}

export interface PlanAction {
  name: string;
  kind: 'script' | 'webhook' | 'manual';
  target: string;
  timeoutSeconds?: number;
}

export interface PlanGroup {
  name: string;
  replications: string[];
  pre: PlanAction[];
  post: PlanAction[];
}

export interface Plan {
  name: string;
  description: string;
  groups: PlanGroup[];
  /** Operations the vault allows on the plan now, when it offers plan runs. */
  allowedOperations?: string[];
}
