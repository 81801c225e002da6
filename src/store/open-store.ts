import { readFile } from 'node:fs/promises';
import { openBackend, type StoreLocation } from './backends/open-backend.js';
import { parseVaultKey } from './sealing.js';
import { ReplicaStore } from './replica-store.js';

/** Where a site keeps its replica store, and (when it is encrypted) the file holding the vault key. */
export type SiteStoreConfig = StoreLocation & { encryptionKeyFile?: string };

/**
 * Opens a site's replica store, creating it when absent unless `create` is false; with a key file, the store is
 * encrypted under that key. Without `create`, an absent store is a `not_found` error.
 */
export async function openSiteStore(config: SiteStoreConfig, o: { create?: boolean } = {}): Promise<ReplicaStore> {
  const create = o.create !== false;
  const { encryptionKeyFile, ...location } = config;
  const vaultKey = encryptionKeyFile ? parseVaultKey(await readFile(encryptionKeyFile)) : undefined;
  return ReplicaStore.open(await openBackend(location, { create }), { create, ...(vaultKey ? { vaultKey, encrypt: true } : {}) });
}
