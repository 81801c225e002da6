import { readFile } from 'node:fs/promises';
import { RefugeError } from '../../src/core/errors.js';
import type { FabricProvider, MachineSpec, MachineStatus } from '../../src/fabric/provider.js';

/**
 * An in-memory fabric provider for unit tests of the orchestration: it records what it was asked to run and reads
 * the first disk it was given (so tests can check the recovered bytes) instead of booting it. The qemu provider,
 * its real counterpart, is tested against real VMs in test/e2e.
 */
export class FakeFabric implements FabricProvider {
  readonly kind = 'fake';
  readonly machines = new Map<string, { spec: MachineSpec; state: MachineStatus['state']; disk0: Buffer | undefined }>();
  failStart = false;

  async start(spec: MachineSpec): Promise<MachineStatus> {
    if (this.failStart) throw new Error(`fake fabric refuses to start ${spec.name}`);
    if (this.machines.get(spec.name)?.state === 'running') throw new RefugeError('already_exists', `machine '${spec.name}' is already running`);
    const disk0 = spec.disks[0] ? await readFile(spec.disks[0].path) : undefined;
    this.machines.set(spec.name, { spec, state: 'running', disk0 });
    return { state: 'running' };
  }

  async status(name: string): Promise<MachineStatus> {
    return { state: this.machines.get(name)?.state ?? 'absent' };
  }

  async stop(name: string): Promise<void> {
    const m = this.machines.get(name);
    if (m) m.state = 'stopped';
  }

  async delete(name: string): Promise<void> {
    this.machines.delete(name);
  }

  async console(name: string): Promise<string> {
    return this.machines.has(name) ? `console of ${name}\n` : '';
  }
}
