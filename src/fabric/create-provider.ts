import { join } from 'node:path';
import type { FabricProvider } from './provider.js';
import { QemuProvider } from './qemu/qemu-provider.js';
import { LibvirtProvider } from './libvirt/libvirt-provider.js';
import { CommandProvider, type CommandProviderOptions } from './command/command-provider.js';

/** How a site runs its machines; stored with the site. `workDir` holds the provider's per-machine files. */
export type FabricConfig =
  | { kind: 'qemu'; workDir: string }
  | { kind: 'libvirt'; workDir: string; uri?: string; domainPrefix?: string }
  | { kind: 'command'; workDir: string; hooks: CommandProviderOptions['hooks']; timeoutMs?: number };

export const FABRIC_KINDS = ['qemu', 'libvirt', 'command'] as const;

/** The provider a site's fabric configuration names (one place, no registration by import side effect). */
export function createFabricProvider(config: FabricConfig, siteName: string): FabricProvider {
  switch (config.kind) {
    case 'qemu':
      return new QemuProvider({ workDir: config.workDir });
    case 'libvirt':
      return new LibvirtProvider({
        workDir: config.workDir,
        uri: config.uri ?? 'qemu:///system',
        domainPrefix: config.domainPrefix ?? `refuge-${siteName}-`,
      });
    case 'command':
      return new CommandProvider({ workDir: join(config.workDir), hooks: config.hooks, ...(config.timeoutMs ? { timeoutMs: config.timeoutMs } : {}) });
  }
}
