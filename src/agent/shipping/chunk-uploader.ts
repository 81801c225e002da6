import { forEachLimit } from '../../core/concurrency.js';
import { isRefugeError } from '../../core/errors.js';
import { MAX_HASHES_PER_QUERY } from '../../protocol/schemas.js';
import { compressIfUseful, encodePatch, type Run } from '../../protocol/chunk-encoding.js';
import type { ChunkBodyEncoding, ReplicatorTransport } from '../clients.js';
import type { RateLimiter } from './rate-limiter.js';
import { retrying, type RetryPolicy } from './retry.js';

export interface UploadItem {
  hash: string;
  data: Buffer;
  /** The hash of this chunk's index in the parent point (null: zeros), when the agent knows it. */
  base?: string | null;
  /** Runs of `data` that differ from `base` (from cdp tracking); with `base`, allows a patch upload. */
  runs?: Run[];
}

export interface UploadStats {
  /** Chunks offered, and those the replicator already had (deduplicated: nothing sent). */
  offered: number;
  deduplicated: number;
  /** Chunks sent whole, and as patches. */
  whole: number;
  patches: number;
  /** Bytes of the chunks sent (as rebuilt at the replicator), and bytes of request bodies on the wire. */
  chunkBytes: number;
  wireBytes: number;
}

export const emptyUploadStats = (): UploadStats => ({ offered: 0, deduplicated: 0, whole: 0, patches: 0, chunkBytes: 0, wireBytes: 0 });

/** A patch is worth it while it carries at most this share of the chunk; beyond, the whole chunk goes. */
const PATCH_MAX_SHARE = 0.5;

/**
 * Ships chunks to the replicator: asks which of a batch it lacks (deduplication), sends those as patches or whole,
 * zstd-compressed when that helps, within the bandwidth limit, retrying what a retry can cure.
 *
 * Memory is bounded (backpressure): a batch fills while at most one earlier batch uploads, and `add` waits for that
 * upload before starting another, so a slow replicator slows the reading of chunks instead of growing the agent.
 */
export class ChunkUploader {
  private batch: UploadItem[] = [];
  private batchBytes = 0;
  private uploading: Promise<void> | undefined;
  private queuedBytes = 0;
  readonly stats = emptyUploadStats();

  constructor(
    private readonly transport: ReplicatorTransport,
    private readonly o: { batchBytes?: number; concurrency?: number; compress?: boolean; limiter?: RateLimiter; retry?: RetryPolicy; signal?: AbortSignal } = {},
  ) {}

  /** Bytes accepted by `add` and not yet acknowledged by the replicator. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  async add(item: UploadItem): Promise<void> {
    this.batch.push(item);
    this.batchBytes += item.data.length;
    this.queuedBytes += item.data.length;
    if (this.batchBytes >= (this.o.batchBytes ?? 16 * 1024 * 1024) || this.batch.length >= MAX_HASHES_PER_QUERY) await this.rotate();
  }

  /** Uploads what is left and waits for everything; throws the first failure. */
  async finish(): Promise<UploadStats> {
    if (this.batch.length > 0) await this.rotate();
    await this.uploading;
    return this.stats;
  }

  private async rotate(): Promise<void> {
    const batch = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    await this.uploading; // at most one batch in flight while the next one fills
    this.uploading = this.send(batch).finally(() => (this.queuedBytes -= bytes));
    this.uploading.catch(() => undefined); // observed by the next rotate() or finish()
  }

  private async send(batch: UploadItem[]): Promise<void> {
    const signal = this.o.signal;
    const hashes = [...new Set(batch.map((i) => i.hash))];
    const missing = new Set(await retrying(() => this.transport.missing(hashes, signal), { ...this.o.retry, ...(signal ? { signal } : {}) }));
    const toSend = batch.filter((i) => missing.delete(i.hash)); // delete: a chunk repeated in the batch goes once
    this.stats.offered += batch.length;
    this.stats.deduplicated += batch.length - toSend.length;
    await forEachLimit(toSend, this.o.concurrency ?? 4, (item) => this.upload(item));
  }

  private async upload(item: UploadItem): Promise<void> {
    const runs = item.runs;
    if (item.base !== undefined && runs && runs.reduce((n, [, l]) => n + l, 0) <= item.data.length * PATCH_MAX_SHARE) {
      try {
        await this.put(item.hash, encodePatch(item.data, runs), { base: item.base, chunkLength: item.data.length });
        this.stats.patches++;
        this.stats.chunkBytes += item.data.length;
        return;
      } catch (err) {
        // The replicator lacks the base (pruned, or the agent's view is stale): send the whole chunk instead.
        if (!isRefugeError(err, 'failed_precondition')) throw err;
      }
    }
    await this.put(item.hash, item.data);
    this.stats.whole++;
    this.stats.chunkBytes += item.data.length;
  }

  private async put(hash: string, raw: Buffer, patch?: ChunkBodyEncoding['patch']): Promise<void> {
    const { body, compressed } = this.o.compress === false ? { body: raw, compressed: false } : compressIfUseful(raw);
    const signal = this.o.signal;
    await this.o.limiter?.take(body.length, signal);
    await retrying(() => this.transport.putChunk(hash, body, { compressed, ...(patch ? { patch } : {}) }, signal), { ...this.o.retry, ...(signal ? { signal } : {}) });
    this.stats.wireBytes += body.length;
  }
}
