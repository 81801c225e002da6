import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RefugeError } from '../../core/errors.js';
import { assertValidName } from '../../core/names.js';
import { run } from '../../core/processes.js';
import { sleep } from '../../core/durations.js';
import type { FabricProvider, MachineSpec, MachineState, MachineStatus } from '../provider.js';
import { probeAccelerator } from '../qemu/accelerator.js';
import { domainXml } from './domain-xml.js';

export interface LibvirtProviderOptions {
  /** libvirt connection URI, e.g. qemu:///system. */
  uri: string;
  /** Folder for each machine's console log and domain XML. */
  workDir: string;
  /** Prefix of domain names, so Refuge's machines never collide with the estate's own domains. */
  domainPrefix: string;
  virsh?: string;
}

/** virsh's domain states (`virsh domstate`) mapped to the fabric's. */
const STATES: Record<string, MachineState> = {
  running: 'running',
  idle: 'running',
  blocked: 'running',
  paused: 'paused',
  'in shutdown': 'running',
  'shut off': 'stopped',
  crashed: 'stopped',
  pmsuspended: 'paused',
};

/**
 * A fabric provider for existing KVM estates: machines are libvirt domains, driven through `virsh` with domain XML.
 * Domains are transient (`virsh create`), so libvirt keeps no definition behind Refuge's back; the XML is kept in
 * the machine's folder. libvirt runs the qemu processes, so machines outlive the vault process.
 */
export class LibvirtProvider implements FabricProvider {
  readonly kind = 'libvirt';

  constructor(private readonly o: LibvirtProviderOptions) {}

  private domain(name: string): string {
    return `${this.o.domainPrefix}${assertValidName('machine', name)}`;
  }

  private dir(name: string): string {
    return join(this.o.workDir, assertValidName('machine', name));
  }

  private async virsh(args: string[], timeoutMs = 120_000) {
    return run(this.o.virsh ?? 'virsh', ['-q', '-c', this.o.uri, ...args], { timeoutMs });
  }

  async start(spec: MachineSpec): Promise<MachineStatus> {
    const current = await this.status(spec.name);
    if (current.state === 'running' || current.state === 'paused') {
      throw new RefugeError('already_exists', `machine '${spec.name}' is already running at this site (domain ${this.domain(spec.name)})`);
    }
    if (current.state === 'stopped') await this.virsh(['undefine', this.domain(spec.name)]); // a stale persistent definition
    const dir = this.dir(spec.name);
    await mkdir(dir, { recursive: true });
    const consolePath = join(dir, 'console.log');
    await rm(consolePath, { force: true });
    const domainType = (await probeAccelerator()) === 'kvm' ? 'kvm' : 'qemu';
    const xmlPath = join(dir, 'domain.xml');
    await writeFile(xmlPath, domainXml(this.domain(spec.name), spec, { consolePath, domainType }));
    const r = await this.virsh(['create', xmlPath]);
    if (r.code !== 0) {
      throw new RefugeError('failed_precondition', `libvirt could not start machine '${spec.name}': ${r.stderr.trim() || r.stdout.trim()}`, {
        hint: `check that libvirtd runs and can read the disks; the domain XML is ${xmlPath}`,
      });
    }
    return this.status(spec.name);
  }

  async status(name: string): Promise<MachineStatus> {
    const r = await this.virsh(['domstate', this.domain(name)]);
    if (r.code !== 0) {
      if (/failed to get domain|Domain not found/i.test(r.stderr)) {
        const known = await readFile(join(this.dir(name), 'domain.xml')).then(() => true, () => false);
        return { state: known ? 'stopped' : 'absent' };
      }
      throw new RefugeError('unavailable', `virsh domstate ${this.domain(name)} failed: ${r.stderr.trim()}`, { hint: `is libvirtd running at ${this.o.uri}?` });
    }
    return { state: STATES[r.stdout.trim()] ?? 'starting' };
  }

  async stop(name: string, options: { graceful?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const domain = this.domain(name);
    const state = (await this.status(name)).state;
    if (state !== 'running' && state !== 'paused') return;
    if (options.graceful) {
      await this.virsh(['shutdown', domain]);
      const deadline = Date.now() + (options.timeoutMs ?? 30_000);
      while (Date.now() < deadline && (await this.status(name)).state === 'running') await sleep(500);
    }
    const r = await this.virsh(['destroy', domain]);
    if (r.code !== 0 && !/not running|failed to get domain|Domain not found/i.test(r.stderr)) {
      throw new RefugeError('unavailable', `virsh destroy ${domain} failed: ${r.stderr.trim()}`);
    }
  }

  async delete(name: string): Promise<void> {
    await this.stop(name);
    await this.virsh(['undefine', this.domain(name)]); // only persistent leftovers; a transient domain is gone once destroyed
    await rm(this.dir(name), { recursive: true, force: true });
  }

  async console(name: string): Promise<string> {
    return readFile(join(this.dir(name), 'console.log'), 'utf8').catch(() => '');
  }
}
