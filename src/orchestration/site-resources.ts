import { join } from 'node:path';
import { isRefugeError, RefugeError } from '../core/errors.js';
import { assertValidName } from '../core/names.js';
import { createFabricProvider, type FabricConfig } from '../fabric/create-provider.js';
import type { FabricProvider } from '../fabric/provider.js';
import { PointExports } from '../instant/point-exports.js';
import { openSiteStore } from '../store/open-store.js';
import type { ReplicaStore } from '../store/replica-store.js';
import type { Site, SiteConfig } from '../vault/model.js';

/**
 * Turns a site's configuration into the things that act on it: its fabric provider (the kind the site record
 * names, with its settings), its replica store, and the recovery points this process serves for instant recovery.
 * Stores are opened once and shared (the replicator and the orchestration use the same instance).
 */
export class SiteResources {
  private readonly stores = new Map<string, Promise<ReplicaStore>>();
  /** Recovery points served over NBD to instantly recovered machines (orchestration/jobs/provision-disks.ts). */
  readonly instant = new PointExports();

  /**
   * `fabricFor` replaces the provider a site's configuration names (tests use an in-memory provider).
   * `holdsPoints` says whether the vault records recovery points in a site's store: such a store is never created
   * anew, so an unmounted volume or a wrong bucket is an error naming it, not an empty store that hides the points.
   */
  constructor(
    private readonly fabricFor?: (site: Site) => FabricProvider,
    private readonly holdsPoints: (site: Site) => Promise<boolean> = async () => false,
  ) {}

  /** The default layout of a site under the vault's data folder. */
  static defaultConfig(dataDir: string, siteName: string): SiteConfig {
    const root = join(dataDir, 'sites', assertValidName('site', siteName));
    return { workDir: join(root, 'machines'), disksDir: join(root, 'disks'), store: { kind: 'filesystem', path: join(root, 'store') } };
  }

  store(site: Site): Promise<ReplicaStore> {
    let store = this.stores.get(site.id);
    if (!store) {
      store = this.openStore(site);
      store.catch(() => this.stores.delete(site.id));
      this.stores.set(site.id, store);
    }
    return store;
  }

  private async openStore(site: Site): Promise<ReplicaStore> {
    const create = !(await this.holdsPoints(site));
    try {
      return await openSiteStore(site.config.store, { create });
    } catch (err) {
      if (create || !isRefugeError(err, 'not_found')) throw err;
      const where = storeWhere(site.config.store);
      throw new RefugeError('failed_precondition', `the replica store of site '${site.name}' is missing at ${where}: the vault records recovery points in it, but the store is not there`, {
        cause: err,
        hint: 'if its volume is not mounted (or its bucket or container is unreachable or renamed), mount or fix it; Refuge does not create an empty store in its place',
      });
    }
  }

  fabric(site: Site): FabricProvider {
    return this.fabricFor?.(site) ?? createFabricProvider(fabricConfig(site), site.name);
  }

  /** Folder for the recovered disks of machine `machineName` started at `site`. */
  disksDir(site: Site, machineName: string): string {
    return join(site.config.disksDir, assertValidName('machine', machineName));
  }

  /** Stops serving recovery points (machines still hydrating wait, reconnecting, for the next vault process). */
  async close(): Promise<void> {
    await this.instant.closeAll();
  }
}

/** A site record's fabric kind and settings as the fabric's configuration. */
export function fabricConfig(site: Site): FabricConfig {
  const s = site.config.fabric ?? {};
  const workDir = site.config.workDir;
  switch (site.provider) {
    case 'qemu':
      return { kind: 'qemu', workDir, ...(s.qemuBinary ? { binary: s.qemuBinary } : {}), ...(s.accelerator ? { accelerator: s.accelerator } : {}) };
    case 'libvirt':
      return { kind: 'libvirt', workDir, ...(s.libvirtUri ? { uri: s.libvirtUri } : {}), ...(s.domainPrefix ? { domainPrefix: s.domainPrefix } : {}) };
    case 'command':
      return { kind: 'command', workDir, hooks: s.hooks ?? { start: '', status: '', stop: '', delete: '' }, ...(s.hookTimeoutSeconds ? { timeoutMs: s.hookTimeoutSeconds * 1000 } : {}) };
  }
}

/** Where a store lives, for messages: its path, bucket or container (never its credentials). */
function storeWhere(s: SiteConfig['store']): string {
  if (s.kind === 'filesystem') return s.path;
  if (s.kind === 's3') return `s3 bucket '${s.bucket}'${s.prefix ? ` prefix '${s.prefix}'` : ''}${s.endpoint ? ` at ${s.endpoint}` : ''}`;
  return `azure container '${s.container}'${s.prefix ? ` prefix '${s.prefix}'` : ''} at ${s.accountUrl}`;
}
