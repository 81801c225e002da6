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
  disks: { path: string; format: 'raw' }[];
  boot: { kind: 'disk' } | { kind: 'kernel'; kernel: string; initrd?: string; cmdline?: string };
}

export interface MachineStatus {
  state: MachineState;
  pid?: number;
  startedAt?: string;
}

export interface FabricProvider {
  readonly kind: string;
  start(spec: MachineSpec): Promise<MachineStatus>;
  status(name: string): Promise<MachineStatus>;
  /** Stops the machine; `graceful` asks the guest first and falls back to a hard stop after the timeout. */
  stop(name: string, options?: { graceful?: boolean; timeoutMs?: number }): Promise<void>;
  delete(name: string): Promise<void>;
  /** The machine's serial console output so far (what its guest printed), or '' when there is none. */
  console(name: string): Promise<string>;
}
