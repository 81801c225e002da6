import { BlobServiceClient, RestError, StorageSharedKeyCredential, type ContainerClient } from '@azure/storage-blob';
import { RefugeError, classifySystemError } from '../../core/errors.js';
import { assertValidKey, assertValidRange, type StoreBackend } from '../backend.js';

/**
 * A store backend in an Azure Blob Storage container (Azurite in tests). Objects are block blobs under `prefix`;
 * an upload becomes visible whole when its block list is committed, so puts are atomic. The account key, when
 * given, is used to sign requests and never appears in `location` or in errors.
 */
export interface AzureBlobBackendConfig {
  kind: 'azure';
  /** The account's blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net (Azurite: http://127.0.0.1:PORT/ACCOUNT). */
  accountUrl: string;
  container: string;
  prefix?: string;
  accountName: string;
  accountKey: string;
}

export class AzureBlobBackend implements StoreBackend {
  readonly location: string;
  private readonly container: ContainerClient;
  private readonly prefix: string;

  constructor(c: AzureBlobBackendConfig) {
    this.prefix = c.prefix ? c.prefix.replace(/\/*$/, '/') : '';
    this.location = `${c.accountUrl.replace(/^http/, 'azblob+http').replace(/\/$/, '')}/${c.container}/${this.prefix}`;
    const service = new BlobServiceClient(c.accountUrl, new StorageSharedKeyCredential(c.accountName, c.accountKey));
    this.container = service.getContainerClient(c.container);
  }

  /** Creates the container if it does not exist (for `refuge store init` and tests). */
  async ensureContainer(): Promise<void> {
    try {
      await this.container.createIfNotExists();
    } catch (err) {
      throw this.fail(err, 'create container', '');
    }
  }

  private blob(key: string) {
    assertValidKey(key);
    return this.container.getBlockBlobClient(this.prefix + key);
  }

  async get(key: string): Promise<Buffer> {
    const b = this.blob(key);
    try {
      return await b.downloadToBuffer();
    } catch (err) {
      if (err instanceof RangeError || (err instanceof RestError && err.statusCode === 416)) {
        if (await this.exists(key)) return Buffer.alloc(0); // an empty blob
      }
      throw this.fail(err, 'read', key);
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    const b = this.blob(key);
    assertValidRange(offset, length);
    try {
      if (length === 0) {
        if (!(await b.exists())) throw new RestError('not found', { statusCode: 404 });
        return Buffer.alloc(0);
      }
      // Read the stream as it comes: near the end of a blob the service sends fewer bytes than asked for.
      const res = await b.download(offset, length);
      const parts: Buffer[] = [];
      for await (const part of res.readableStreamBody ?? []) parts.push(part as Buffer);
      return Buffer.concat(parts);
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 416) return Buffer.alloc(0); // at or past the end
      throw this.fail(err, 'read', key);
    }
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const b = this.blob(key);
    try {
      await b.uploadData(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    } catch (err) {
      throw this.fail(err, 'write', key);
    }
  }

  async exists(key: string): Promise<boolean> {
    const b = this.blob(key);
    try {
      return await b.exists();
    } catch (err) {
      throw this.fail(err, 'stat', key);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    try {
      for await (const item of this.container.listBlobsFlat({ prefix: this.prefix + prefix })) keys.push(item.name.slice(this.prefix.length));
    } catch (err) {
      throw this.fail(err, 'list', prefix);
    }
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    const b = this.blob(key);
    try {
      await b.deleteIfExists();
    } catch (err) {
      throw this.fail(err, 'delete', key);
    }
  }

  private fail(err: unknown, op: string, key: string): RefugeError {
    if (err instanceof RefugeError) return err;
    const status = err instanceof RestError ? err.statusCode : undefined;
    const code = err instanceof RestError ? err.code : undefined;
    const where = `store ${op} of '${key}' at ${this.location} failed`;
    if (code === 'ContainerNotFound') return new RefugeError('failed_precondition', `${where}: the container does not exist`, { hint: 'create the container first (refuge store init creates it)', cause: err });
    if (status === 404) return new RefugeError('not_found', `store object '${key}' not found at ${this.location}`, { cause: err });
    if (status === 401 || status === 403) return new RefugeError('permission_denied', `${where}: access denied`, { hint: 'check the storage account name and key', cause: err });
    const retryable = status === undefined || status >= 500 || status === 429 || classifySystemError(err) === 'unavailable';
    return new RefugeError(retryable ? 'unavailable' : 'internal', `${where}: ${(err as Error).message}`, { cause: err, retryable });
  }
}
