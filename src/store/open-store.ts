import { readFile } from 'node:fs/promises';
import { openBackend, type StoreLocation } from './backends/open-backend.js';
import { parseVaultKey } from './sealing.js';
import { ReplicaStore } from './replica-store.js';

/** Where a site keeps its replica store, and (when it is encrypted) the file holding the vault key. */
export type SiteStoreConfig = StoreLocation & { encryptionKeyFile?: string };

/** Opens (creating if needed) a site's replica store; with a key file, the store is encrypted under that key. */
export async function openSiteStore(config: SiteStoreConfig): Promise<ReplicaStore> {
  const { encryptionKeyFile, ...location } = config;
  const vaultKey = encryptionKeyFile ? parseVaultKey(await readFile(encryptionKeyFile)) : undefined;
  return ReplicaStore.open(await openBackend(location, { create: true }), { create: true, ...(vaultKey ? { vaultKey, encrypt: true } : {}) });
}
