import type { Logger } from '../core/log.js';
import type { OperationService } from '../orchestration/operations.js';
import type { SiteResources } from '../orchestration/site-resources.js';
import type { Replicator } from '../replicator/replicator.js';
import type { JobEngine } from '../vault/jobs/engine.js';
import type { VaultRepositories } from '../vault/repositories/index.js';
import type { ReplicatorRegistry } from './replicator-registry.js';

/** Everything the HTTP layer calls into; assembled by server.ts (or by tests). */
export interface AppDeps {
  repos: VaultRepositories;
  engine: JobEngine;
  operations: OperationService;
  replicator: Replicator;
  sites: SiteResources;
  /** The vault's data folder; new sites get their default layout under it. */
  dataDir: string;
  /** The URL agents use to reach the vault's own replicator (this process's /replicator/v1). */
  replicatorUrl(): string;
  /** Standalone replicators serving sites; agents of a site that has a live one are sent there instead. */
  replicators: ReplicatorRegistry;
  log: Logger;
}
