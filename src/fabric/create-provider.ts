import { join } from 'node:path';
import { RefugeError } from '../core/errors.js';
import type { FabricProvider } from './provider.js';
import { QemuProvider } from './qemu/qemu-provider.js';
import type { Accelerator } from './qemu/accelerator.js';
import { LibvirtProvider } from './libvirt/libvirt-provider.js';
import { CommandProvider, type CommandProviderOptions } from './command/command-provider.js';

/** How a site runs its machines; stored with the site. `workDir` holds the provider's per-machine files. */
export type FabricConfig =
  | { kind: 'qemu'; workDir: string; binary?: string; accelerator?: Accelerator | 'auto' }
  | { kind: 'libvirt'; workDir: string; uri?: string; domainPrefix?: string }
  | { kind: 'command'; workDir: string; hooks: CommandProviderOptions['hooks']; timeoutMs?: number };

/** The provider a site's fabric configuration names (one place, no registration by import side effect). */
export function createFabricProvider(config: FabricConfig, siteName: string): FabricProvider {
  switch (config.kind) {
    case 'qemu':
      return new QemuProvider({ workDir: config.workDir, ...(config.binary ? { binary: config.binary } : {}), ...(config.accelerator ? { accelerator: config.accelerator } : {}) });
    case 'libvirt':
      return new LibvirtProvider({
        workDir: config.workDir,
        uri: config.uri ?? 'qemu:///system',
        domainPrefix: config.domainPrefix ?? `refuge-${siteName}-`,
      });
    case 'command':
      if (!config.hooks.start || !config.hooks.status || !config.hooks.stop || !config.hooks.delete) {
        throw new RefugeError('failed_precondition', `site '${siteName}' uses the command fabric provider but its start, status, stop and delete hooks are not all set`, {
          hint: 'set them with `refuge site update --fabric` (contract: src/fabric/command/README.md)',
        });
      }
      return new CommandProvider({ workDir: join(config.workDir), hooks: config.hooks, ...(config.timeoutMs ? { timeoutMs: config.timeoutMs } : {}) });
  }
}
