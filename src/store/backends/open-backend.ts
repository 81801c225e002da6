import type { AzureBlobBackendConfig } from './azure-blob.js';
import { FilesystemBackend } from './filesystem.js';
import type { S3BackendConfig } from './s3.js';
import { ConcurrencyLimitedBackend, RetryingBackend } from './wrappers.js';
import type { StoreBackend } from '../backend.js';

/** Where a replica store lives: the one place a configuration becomes a backend with its wrappers. */
export type StoreLocation = { kind: 'filesystem'; path: string } | S3BackendConfig | AzureBlobBackendConfig;

export const STORE_KINDS = ['filesystem', 's3', 'azure'] as const;

/**
 * The backend for `location`, with retries and a request limit around the network ones. The object-store SDKs are
 * loaded only when a store of theirs is opened: together they cost a process ~50 MiB of memory (P11), which a vault
 * on filesystem stores should not carry.
 */
export async function openBackend(location: StoreLocation, o: { create?: boolean } = {}): Promise<StoreBackend> {
  switch (location.kind) {
    case 'filesystem':
      return o.create ? FilesystemBackend.create(location.path) : new FilesystemBackend(location.path);
    case 's3': {
      const { S3Backend } = await import('./s3.js');
      return new RetryingBackend(new ConcurrencyLimitedBackend(new S3Backend(location), 16));
    }
    case 'azure': {
      const { AzureBlobBackend } = await import('./azure-blob.js');
      const backend = new AzureBlobBackend(location);
      if (o.create) await backend.ensureContainer();
      return new RetryingBackend(new ConcurrencyLimitedBackend(backend, 16));
    }
  }
}
