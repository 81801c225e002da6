import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { RefugeError, classifySystemError } from '../../core/errors.js';
import { sleep } from '../../core/durations.js';
import { assertValidKey, assertValidRange, type StoreBackend } from '../backend.js';

/**
 * A store backend in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW; s3rver in tests). Objects are stored under
 * `prefix` with the store's keys. A PUT is atomic in S3 (a reader sees the old object, the new one or none),
 * which is all the store needs. Credentials come from `credentials` or the AWS SDK's usual chain (environment,
 * profile, instance role) and never appear in `location` or in errors.
 */
export interface S3BackendConfig {
  kind: 's3';
  bucket: string;
  /** Folder inside the bucket, e.g. `refuge/site-a/` (empty for the bucket root). */
  prefix?: string;
  /** For S3-compatible services: their URL; path-style addressing is then used. */
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** User metadata holding the SHA-256 of an object's bytes, to tell a torn read from the object. */
const SUM_META = 'refuge-sha256';

const statusOf = (err: unknown): number | undefined => (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
const nameOf = (err: unknown): string => (err as { name?: string }).name ?? '';

export class S3Backend implements StoreBackend {
  readonly location: string;
  private readonly client: S3Client;
  private readonly prefix: string;

  constructor(private readonly c: S3BackendConfig) {
    this.prefix = c.prefix ? c.prefix.replace(/\/*$/, '/') : '';
    this.location = `s3://${c.bucket}/${this.prefix}${c.endpoint ? ` (at ${c.endpoint})` : ''}`;
    this.client = new S3Client({
      region: c.region ?? 'us-east-1',
      ...(c.endpoint ? { endpoint: c.endpoint, forcePathStyle: c.forcePathStyle ?? true } : {}),
      ...(c.credentials ? { credentials: c.credentials } : {}),
    });
  }

  private key(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  /**
   * One GET, checked for completeness: every object is put with the SHA-256 of its bytes in its metadata, and a
   * whole-object read that does not match it is a torn transfer (a dropped connection, or a server that shows an
   * object while still writing it, as s3rver does, even before its metadata exists) and is fetched again. A mismatch
   * that persists is damage at rest (or an object Refuge did not write): the bytes are returned and the store's own
   * checks judge them. A range read checks its length.
   */
  private async fetch(key: string, range?: { offset: number; length: number }): Promise<Buffer> {
    const k = this.key(key);
    for (let attempt = 1; ; attempt++) {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.c.bucket, Key: k, ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}) }));
      let data = Buffer.from((await out.Body?.transformToByteArray()) ?? new Uint8Array());
      if (range && !out.ContentRange && data.length > range.length) data = data.subarray(range.offset, range.offset + range.length); // Range ignored
      const sum = out.Metadata?.[SUM_META];
      const whole = range
        ? out.ContentLength === undefined || data.length === out.ContentLength
        : sum !== undefined && createHash('sha256').update(data).digest('hex') === sum; // no sum: not written whole yet
      if (whole || attempt >= 20) return data;
      await sleep(10 * attempt);
    }
  }

  async get(key: string): Promise<Buffer> {
    this.key(key);
    try {
      return await this.fetch(key);
    } catch (err) {
      throw this.fail(err, 'read', key);
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    this.key(key);
    assertValidRange(offset, length);
    if (length === 0) {
      if (!(await this.exists(key))) throw this.fail(Object.assign(new Error('NotFound'), { name: 'NotFound' }), 'read', key);
      return Buffer.alloc(0);
    }
    try {
      return await this.fetch(key, { offset, length });
    } catch (err) {
      if (statusOf(err) === 416 || nameOf(err) === 'InvalidRange') return Buffer.alloc(0); // at or past the end
      throw this.fail(err, 'read', key);
    }
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const k = this.key(key);
    try {
      const sum = createHash('sha256').update(data).digest('hex');
      await this.client.send(new PutObjectCommand({ Bucket: this.c.bucket, Key: k, Body: data, ContentLength: data.length, Metadata: { [SUM_META]: sum } }));
    } catch (err) {
      throw this.fail(err, 'write', key);
    }
  }

  async exists(key: string): Promise<boolean> {
    const k = this.key(key);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.c.bucket, Key: k }));
      return true;
    } catch (err) {
      if (statusOf(err) === 404 || nameOf(err) === 'NotFound' || nameOf(err) === 'NoSuchKey') return false;
      throw this.fail(err, 'stat', key);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    try {
      do {
        const out = await this.client.send(new ListObjectsV2Command({ Bucket: this.c.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }));
        for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key.slice(this.prefix.length));
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.fail(err, 'list', prefix);
    }
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    const k = this.key(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.c.bucket, Key: k }));
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw this.fail(err, 'delete', key);
    }
  }

  private fail(err: unknown, op: string, key: string): RefugeError {
    if (err instanceof RefugeError) return err;
    const status = statusOf(err);
    const name = nameOf(err);
    const where = `store ${op} of '${key}' at ${this.location} failed`;
    if (status === 404 || name === 'NoSuchKey' || name === 'NotFound') {
      if (name === 'NoSuchBucket') return new RefugeError('failed_precondition', `${where}: bucket ${this.c.bucket} does not exist`, { hint: 'create the bucket first', cause: err });
      return new RefugeError('not_found', `store object '${key}' not found at ${this.location}`, { cause: err });
    }
    if (status === 401 || status === 403) return new RefugeError('permission_denied', `${where}: access denied (${name})`, { hint: 'check the S3 credentials and the bucket policy', cause: err });
    if (status === 507 || name === 'EntityTooLarge') return new RefugeError('resource_exhausted', `${where}: ${name}`, { cause: err });
    const retryable = status === undefined || status >= 500 || status === 429 || classifySystemError(err) === 'unavailable' || name === 'TimeoutError';
    return new RefugeError(retryable ? 'unavailable' : 'internal', `${where}: ${(err as Error).message || name}`, { cause: err, retryable });
  }
}
