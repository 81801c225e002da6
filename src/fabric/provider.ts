/**
 * A fabric provider runs machines at a site. The orchestration asks it to start a machine from a set of disk
 * images, to report on it and to stop or delete it; it never needs to know which hypervisor answers.
 *
 * Contract every provider meets (tested by the shared fabric suite):
 * - `start` returns once the machine's process runs (not when its guest has booted); starting a name that is
 *   already running fails with `already_exists`.
 * - `status` of an unknown name returns `{ state: 'absent' }`, never throws for it.
 * - `stop` is idempotent: stopping a stopped or absent machine succeeds. `delete` stops first, then removes
 *   everything the provider created for the machine (never the disks it was given).
 * - Machines outlive the process that started them (a vault restart does not stop recovered machines).
 */

export const MACHINE_STATES = ['absent', 'starting', 'running', 'paused', 'stopped'] as const;
export type MachineState = (typeof MACHINE_STATES)[number];

export interface MachineSpec {
  /** Unique per site; also names the provider's working folder for the machine. */
  name: string;
  cpus: number;
  memoryMiB: number;
  /** A raw image file, or an NBD URI (`nbd+unix:///NAME?socket=PATH`) for a disk served by a cdp agent (qemu reconnects when the agent restarts). */
  disks: MachineDisk[];
  /** Network cards in order; none: the machine has no network. */
  nics?: MachineNic[];
  boot: { kind: 'disk' } | { kind: 'kernel'; kernel: string; initrd?: string; cmdline?: string };
}

export interface MachineDisk {
  path: string;
  format: 'raw';
  /**
   * Instant recovery: the disk's bytes come from this NBD export (a recovery point served from the replica store)
   * under a local copy-on-write overlay, and `path` is where hydration copies them (created sparse at start). Only
   * providers with `hydration` take such disks.
   */
  instant?: { nbd: string; sizeBytes: number };
}

/** A network card: the site network it joins (as the provider maps site networks) and the address it gets there. */
export interface MachineNic {
  network: string;
  /** The network's CIDR (the provider hands out addresses inside it). */
  cidr?: string;
  ipv4?: string;
  /** An isolated network (test failover): no route out of it. */
  isolated?: boolean;
  mac?: string;
}

export interface MachineStatus {
  state: MachineState;
  pid?: number;
  startedAt?: string;
}

export type HydrationState = 'none' | 'hydrating' | 'ready' | 'done' | 'failed';

/** How far the copy of a machine's instant disks onto local disks has come. */
export interface HydrationStatus {
  /** none: no instant disks (or not started); ready: every disk copied and kept in sync, switch-over pending. */
  state: HydrationState;
  doneBytes: number;
  totalBytes: number;
  disks: { path: string; state: HydrationState; doneBytes: number; totalBytes: number; error?: string }[];
}

/**
 * Moving a running machine off its instant disks onto local ones, without a restart. Every call is idempotent and
 * works from the machine's own state (a restarted vault picks up where the previous process left off).
 */
export interface Hydration {
  /** Starts copying every instant disk onto its local path; `bytesPerSecond` 0 or absent: unlimited. */
  start(name: string, options?: { bytesPerSecond?: number }): Promise<HydrationStatus>;
  status(name: string): Promise<HydrationStatus>;
  setSpeed(name: string, bytesPerSecond: number): Promise<void>;
  /** Once every disk is `ready`: switches the machine onto its local disks and lets go of the NBD exports. */
  complete(name: string): Promise<HydrationStatus>;
}

export interface FabricProvider {
  readonly kind: string;
  /** Present when the provider can start machines on instant disks (`MachineDisk.instant`) and hydrate them. */
  readonly hydration?: Hydration;
  start(spec: MachineSpec): Promise<MachineStatus>;
  status(name: string): Promise<MachineStatus>;
  /** Stops the machine; `graceful` asks the guest first and falls back to a hard stop after the timeout. */
  stop(name: string, options?: { graceful?: boolean; timeoutMs?: number }): Promise<void>;
  delete(name: string): Promise<void>;
  /** The machine's serial console output so far (what its guest printed), or '' when there is none. */
  console(name: string): Promise<string>;
}
