import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { RefugeError } from '../../core/errors.js';
import { openBackend, type StoreLocation } from '../../store/backends/open-backend.js';
import { ReplicaStore, type OpenOptions } from '../../store/replica-store.js';
import { parseVaultKey } from '../../store/sealing.js';

/**
 * How `refuge store` commands name a store: `--path DIR` for a filesystem store, or `--store URL` with
 * `s3://BUCKET/PREFIX` (endpoint from REFUGE_S3_ENDPOINT for S3-compatible services; credentials from the AWS SDK's
 * usual environment) or `azblob://ACCOUNT/CONTAINER/PREFIX` (account URL from REFUGE_AZURE_ACCOUNT_URL, default
 * the public cloud; key from AZURE_STORAGE_KEY). `--key-file` gives the vault key of an encrypted store.
 */

export interface StoreOptions {
  path?: string;
  store?: string;
  keyFile?: string;
}

export function addStoreOptions(cmd: Command): Command {
  return cmd
    .option('--path <dir>', 'the store folder (a filesystem store)')
    .option('--store <url>', 'the store: a folder, s3://bucket/prefix or azblob://account/container/prefix')
    .option('--key-file <file>', 'the vault key of an encrypted store (32 bytes, or 64 hex characters)');
}

export function parseStoreLocation(o: StoreOptions): StoreLocation {
  const text = o.store ?? o.path;
  if (!text) throw new RefugeError('invalid_argument', 'which store? give --path DIR or --store URL');
  const s3 = /^s3:\/\/([^/]+)\/?(.*)$/.exec(text);
  if (s3) {
    const endpoint = process.env.REFUGE_S3_ENDPOINT;
    return { kind: 's3', bucket: s3[1] as string, prefix: s3[2] ?? '', ...(endpoint ? { endpoint, forcePathStyle: true } : {}) };
  }
  const az = /^azblob:\/\/([^/]+)\/([^/]+)\/?(.*)$/.exec(text);
  if (az) {
    const accountName = az[1] as string;
    const accountKey = process.env.AZURE_STORAGE_KEY;
    if (!accountKey) throw new RefugeError('failed_precondition', 'an Azure Blob store needs the account key in AZURE_STORAGE_KEY');
    return {
      kind: 'azure',
      accountUrl: process.env.REFUGE_AZURE_ACCOUNT_URL ?? `https://${accountName}.blob.core.windows.net`,
      container: az[2] as string,
      prefix: az[3] ?? '',
      accountName,
      accountKey,
    };
  }
  return { kind: 'filesystem', path: resolve(text.replace(/^file:\/\//, '')) };
}

export async function readKeyFile(path: string | undefined): Promise<Buffer | undefined> {
  if (!path) return undefined;
  try {
    return parseVaultKey(await readFile(path));
  } catch (err) {
    throw RefugeError.wrap(err, `reading the vault key from ${path}`);
  }
}

export async function openStoreFromOptions(o: StoreOptions, extra: OpenOptions = {}): Promise<ReplicaStore> {
  const backend = await openBackend(parseStoreLocation(o), { create: extra.create ?? false });
  const vaultKey = await readKeyFile(o.keyFile);
  return ReplicaStore.open(backend, { ...extra, ...(vaultKey ? { vaultKey } : {}) });
}
