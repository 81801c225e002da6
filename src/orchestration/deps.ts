import type { VaultRepositories } from '../vault/repositories/index.js';
import type { SiteResources } from './site-resources.js';

/** What the orchestration's jobs act through; assembled once by the vault server. */
export interface OrchestrationDeps {
  repos: VaultRepositories;
  sites: SiteResources;
}
