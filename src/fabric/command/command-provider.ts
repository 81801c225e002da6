import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RefugeError } from '../../core/errors.js';
import { assertValidName } from '../../core/names.js';
import { run } from '../../core/processes.js';
import { MACHINE_STATES, type FabricProvider, type MachineSpec, type MachineState, type MachineStatus } from '../provider.js';

/**
 * The `command` fabric provider runs machines through operator-supplied hook commands, for any platform Refuge
 * has no provider for. The contract (also in src/fabric/command/README.md):
 *
 * - Each hook is an executable run with no arguments; the context is in environment variables:
 *   REFUGE_HOOK (start|status|stop|delete|console), REFUGE_MACHINE, REFUGE_WORK_DIR (a folder the provider gives
 *   the machine), REFUGE_CPUS, REFUGE_MEMORY_MIB, REFUGE_DISK_COUNT, REFUGE_DISK_0 .. REFUGE_DISK_<n-1> (raw
 *   image paths), REFUGE_BOOT_KIND (disk|kernel), REFUGE_BOOT_KERNEL, REFUGE_BOOT_INITRD, REFUGE_BOOT_CMDLINE,
 *   REFUGE_GRACEFUL (1|0, for stop), and REFUGE_SPEC_JSON (the whole machine spec as JSON).
 * - `start` returns once the machine runs or is starting; exit status non-zero means it could not start (its stderr
 *   is shown to the operator).
 * - `status` prints one word on stdout: absent, starting, running, paused or stopped; it must print `absent` for a
 *   machine it does not know.
 * - `stop` and `delete` are idempotent (exit 0 for a stopped or unknown machine); `delete` never removes the
 *   disks it was given.
 * - `console` (optional) prints the machine's console output so far.
 * - Every hook must finish within the timeout (default 120 s); a hook that hangs is killed and reported.
 */
export interface CommandProviderOptions {
  workDir: string;
  hooks: { start: string; status: string; stop: string; delete: string; console?: string };
  timeoutMs?: number;
}

export class CommandProvider implements FabricProvider {
  readonly kind = 'command';

  constructor(private readonly o: CommandProviderOptions) {}

  private dir(name: string): string {
    return join(this.o.workDir, assertValidName('machine', name));
  }

  /** The spec of a machine started earlier, so stop/delete/status hooks get the same context as start did. */
  private async savedSpec(name: string): Promise<MachineSpec | undefined> {
    const text = await readFile(join(this.dir(name), 'spec.json'), 'utf8').catch(() => '');
    return text ? (JSON.parse(text) as MachineSpec) : undefined;
  }

  private async hook(hook: keyof CommandProviderOptions['hooks'], name: string, spec: MachineSpec | undefined, extra: Record<string, string> = {}) {
    const command = this.o.hooks[hook];
    if (!command) return undefined;
    const env: NodeJS.ProcessEnv = { ...process.env, REFUGE_HOOK: hook, REFUGE_MACHINE: name, REFUGE_WORK_DIR: this.dir(name), ...extra };
    if (spec) {
      env.REFUGE_CPUS = String(spec.cpus);
      env.REFUGE_MEMORY_MIB = String(spec.memoryMiB);
      env.REFUGE_DISK_COUNT = String(spec.disks.length);
      spec.disks.forEach((d, i) => (env[`REFUGE_DISK_${i}`] = d.path));
      env.REFUGE_BOOT_KIND = spec.boot.kind;
      if (spec.boot.kind === 'kernel') {
        env.REFUGE_BOOT_KERNEL = spec.boot.kernel;
        env.REFUGE_BOOT_INITRD = spec.boot.initrd ?? '';
        env.REFUGE_BOOT_CMDLINE = spec.boot.cmdline ?? '';
      }
      env.REFUGE_SPEC_JSON = JSON.stringify(spec);
    }
    const r = await run(command, [], { env, timeoutMs: this.o.timeoutMs ?? 120_000 });
    if (r.code !== 0) {
      throw new RefugeError('failed_precondition', `fabric hook '${hook}' (${command}) for machine '${name}' failed (exit ${r.code ?? 'killed'}): ${r.stderr.trim().slice(0, 500)}`, {
        hint: 'the hook contract is in src/fabric/command/README.md',
      });
    }
    return r.stdout;
  }

  async start(spec: MachineSpec): Promise<MachineStatus> {
    const current = await this.status(spec.name);
    if (current.state === 'running' || current.state === 'paused' || current.state === 'starting') {
      throw new RefugeError('already_exists', `machine '${spec.name}' is already running at this site`);
    }
    await mkdir(this.dir(spec.name), { recursive: true });
    await writeFile(join(this.dir(spec.name), 'spec.json'), JSON.stringify(spec, null, 2));
    await this.hook('start', spec.name, spec);
    return this.status(spec.name);
  }

  async status(name: string): Promise<MachineStatus> {
    const out = ((await this.hook('status', name, await this.savedSpec(name))) ?? '').trim();
    if (!(MACHINE_STATES as readonly string[]).includes(out)) {
      throw new RefugeError('failed_precondition', `fabric hook 'status' for machine '${name}' printed '${out.slice(0, 80)}', not one of ${MACHINE_STATES.join(', ')}`);
    }
    return { state: out as MachineState };
  }

  async stop(name: string, options: { graceful?: boolean } = {}): Promise<void> {
    await this.hook('stop', name, await this.savedSpec(name), { REFUGE_GRACEFUL: options.graceful ? '1' : '0' });
  }

  async delete(name: string): Promise<void> {
    await this.hook('delete', name, await this.savedSpec(name));
    await rm(this.dir(name), { recursive: true, force: true });
  }

  async console(name: string): Promise<string> {
    return (await this.hook('console', name, await this.savedSpec(name)).catch(() => '')) ?? '';
  }
}
