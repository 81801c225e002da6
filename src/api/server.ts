import { join } from 'node:path';
import { RefugeError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/log.js';
import { createJobDefinitions } from '../orchestration/jobs/definitions.js';
import { OperationService } from '../orchestration/operations.js';
import { SiteResources } from '../orchestration/site-resources.js';
import { Replicator, type TargetResolver } from '../replicator/replicator.js';
import { openDatabase } from '../vault/db/connect.js';
import { JobEngine } from '../vault/jobs/engine.js';
import { createRepositories, type VaultRepositories } from '../vault/repositories/index.js';
import { isReplicating } from '../vault/replication-state.js';
import type { FabricProvider } from '../fabric/provider.js';
import type { Site } from '../vault/model.js';
import { buildApp, type App } from './app.js';
import { ReplicatorRegistry } from './replicator-registry.js';

export interface VaultServerOptions {
  /** Folder for the database, the sites' stores and machines (unless configured elsewhere). */
  dataDir: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Database URL; defaults to SQLite in the data folder. */
  databaseUrl?: string;
  log?: Logger;
  /** Replaces the fabric provider of every site (tests). */
  fabricFor?: (site: Site) => FabricProvider;
}

export interface VaultServer {
  url: string;
  app: App;
  repos: VaultRepositories;
  engine: JobEngine;
  replicator: Replicator;
  close(): Promise<void>;
}

/** Where the in-process replicator finds each replication's store, and how committed points reach the vault. */
function vaultTargets(repos: VaultRepositories, sites: SiteResources): TargetResolver {
  return {
    async resolve(replicationId) {
      const rep = await repos.replications.byId(replicationId);
      if (!isReplicating(rep.state)) {
        throw new RefugeError('operation_not_allowed', `replication '${rep.name}' is ${rep.state}; it accepts no data`, {
          details: { allowedOperations: [] },
        });
      }
      const store = await sites.store(await repos.sites.byId(rep.targetSiteId));
      return {
        store,
        onCommitted: (m) =>
          repos.replications.recordPoint({
            id: m.id,
            replicationId: m.replicationId,
            parentId: m.parentId,
            capturedAt: m.capturedAt,
            committedAt: m.committedAt,
            consistency: m.consistency,
            changedBytes: m.stats.changedBytes,
            storedBytes: m.stats.storedBytes,
          }),
      };
    },
  };
}

/**
 * The composition root of `refuge vault`: database, stores, replicator, jobs and the HTTP API, assembled but not
 * listening (tests call `app.inject()`); `startVaultServer` listens.
 */
export async function assembleVault(o: VaultServerOptions): Promise<VaultServer & { setUrl(url: string): void }> {
  const log = o.log ?? createLogger('vault');
  const db = await openDatabase(o.databaseUrl ?? `sqlite:${join(o.dataDir, 'vault.db')}`);
  const repos = createRepositories(db);
  const sites = new SiteResources(o.fabricFor);
  const deps = { repos, sites };
  const engine = new JobEngine(db, createJobDefinitions(deps), log);
  const operations = new OperationService(deps, engine);
  const replicator = new Replicator(vaultTargets(repos, sites), log.child({ component: 'replicator' }));
  let url = '';
  const app = await buildApp({
    repos,
    engine,
    operations,
    replicator,
    sites,
    dataDir: o.dataDir,
    replicatorUrl: () => `${url}/replicator/v1`,
    replicators: new ReplicatorRegistry(),
    log,
  });
  await engine.start();
  return {
    get url() {
      return url;
    },
    setUrl(u: string) {
      url = u;
    },
    app,
    repos,
    engine,
    replicator,
    async close() {
      await engine.stop();
      await app.close();
      await db.destroy();
    },
  };
}

export async function startVaultServer(o: VaultServerOptions): Promise<VaultServer> {
  const vault = await assembleVault(o);
  const host = o.host ?? '127.0.0.1';
  const port = o.port ?? 7443;
  try {
    const address = await vault.app.listen({ host, port });
    vault.setUrl(address.replace('[::1]', 'localhost'));
  } catch (err) {
    await vault.close();
    throw RefugeError.wrap(err, `vault cannot listen on ${host}:${port}`, 'unavailable');
  }
  vault.app.log.info({ url: vault.url, dataDir: o.dataDir }, 'vault listening');
  return vault;
}
