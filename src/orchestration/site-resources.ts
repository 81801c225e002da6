import { join } from 'node:path';
import { assertValidName } from '../core/names.js';
import { QemuProvider } from '../fabric/qemu/qemu-provider.js';
import type { FabricProvider } from '../fabric/provider.js';
import { openSiteStore } from '../store/open-store.js';
import type { ReplicaStore } from '../store/replica-store.js';
import type { Site, SiteConfig } from '../vault/model.js';

/**
 * Turns a site's configuration into the things that act on it: its fabric provider and its replica store.
 * Stores are opened once and shared (the replicator and the orchestration use the same instance).
 */
export class SiteResources {
  private readonly stores = new Map<string, Promise<ReplicaStore>>();

  /** `fabricFor` replaces the provider a site's configuration names (tests use an in-memory provider). */
  constructor(private readonly fabricFor?: (site: Site) => FabricProvider) {}

  /** The default layout of a site under the vault's data folder. */
  static defaultConfig(dataDir: string, siteName: string): SiteConfig {
    const root = join(dataDir, 'sites', assertValidName('site', siteName));
    return { workDir: join(root, 'machines'), disksDir: join(root, 'disks'), store: { kind: 'filesystem', path: join(root, 'store') } };
  }

  store(site: Site): Promise<ReplicaStore> {
    let store = this.stores.get(site.id);
    if (!store) {
      store = openSiteStore(site.config.store);
      store.catch(() => this.stores.delete(site.id));
      this.stores.set(site.id, store);
    }
    return store;
  }

  fabric(site: Site): FabricProvider {
    return this.fabricFor?.(site) ?? new QemuProvider({ workDir: site.config.workDir });
  }

  /** Folder for the recovered disks of machine `machineName` started at `site`. */
  disksDir(site: Site, machineName: string): string {
    return join(site.config.disksDir, assertValidName('machine', machineName));
  }
}
