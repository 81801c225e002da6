import { forEachLimit } from '../../core/concurrency.js';
import { isRefugeError } from '../../core/errors.js';
import { MAX_HASHES_PER_QUERY } from '../../protocol/limits.js';
import type { ChunkBatchResponse } from '../../protocol/schemas.js';
import { BATCH_TARGET_BYTES, MAX_BATCH_ENTRIES, type BatchEntry } from '../../protocol/chunk-batch.js';
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

/** A batch entry with the length of the chunk it rebuilds. */
type Encoded = BatchEntry & { rawLength: number };

/**
 * Bytes of chunks per upload batch (one missing-chunks query): one batch fills while the previous one uploads, and
 * each holds copies of its chunks plus their encoded bodies, so this bounds the agent's memory (P11 in
 * docs/benchmarks.md: 16 MiB batches held ~70 MiB). About one batch request (BATCH_TARGET_BYTES).
 */
export const UPLOAD_BATCH_BYTES = 4 * 1024 * 1024;

/** Batch requests under way at once: one uploads while the replicator works on another. */
const BATCHES_IN_FLIGHT = 2;

/** A patch is worth it while it carries at most this share of the chunk; beyond, the whole chunk goes. */
const PATCH_MAX_SHARE = 0.5;

/**
 * Ships chunks to the replicator: asks which of a batch it lacks (deduplication), sends those as patches or whole,
 * zstd-compressed when that helps, within the bandwidth limit, retrying what a retry can cure. Chunks travel
 * several to a request (protocol/chunk-batch.ts): a request costs the replicator more than a small patch does.
 *
 * Memory is bounded (backpressure): a batch fills while at most one earlier batch uploads, and `add` waits for that
 * upload before starting another, so a slow replicator slows the reading of chunks instead of growing the agent.
 */
export class ChunkUploader {
  private batch: UploadItem[] = [];
  private batchBytes = 0;
  private uploading: Promise<void> | undefined;
  private queuedBytes = 0;
  /** Whether the replicator takes batch uploads: unknown until the first batch is answered. */
  private batchesWork: boolean | undefined;
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
    if (this.batchBytes >= (this.o.batchBytes ?? UPLOAD_BATCH_BYTES) || this.batch.length >= MAX_HASHES_PER_QUERY) await this.rotate();
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
    if (this.transport.putChunks && this.batchesWork !== false) {
      try {
        await this.sendInBatches(toSend);
        this.batchesWork = true;
        return;
      } catch (err) {
        // A replicator without batch uploads answers 404 on the route: send each chunk on its own from then on
        // (what the batches already stored is skipped: uploads are idempotent).
        if (this.batchesWork === true || !isRefugeError(err, 'not_found')) throw err;
        this.batchesWork = false;
      }
    }
    await forEachLimit(toSend, this.o.concurrency ?? 4, (item) => this.upload(item));
  }

  /** Sends the chunks in batch requests of about BATCH_TARGET_BYTES, a few in flight. */
  private async sendInBatches(items: UploadItem[]): Promise<void> {
    const groups: { entries: Encoded[]; items: UploadItem[]; bytes: number }[] = [];
    let group: (typeof groups)[number] | undefined;
    for (const item of items) {
      const entry = this.encode(item, true);
      if (!group || group.entries.length >= MAX_BATCH_ENTRIES || group.bytes + entry.body.length > BATCH_TARGET_BYTES) groups.push((group = { entries: [], items: [], bytes: 0 }));
      group.entries.push(entry);
      group.items.push(item);
      group.bytes += entry.body.length;
    }
    await forEachLimit(groups, BATCHES_IN_FLIGHT, async (g) => {
      const { baseMissing } = await this.putBatch(g.entries);
      // The replicator lacks the base of these patches (pruned, or the agent's view is stale): send them whole.
      const again = new Set(baseMissing);
      const whole = g.items.filter((i, n) => g.entries[n]?.patch && again.has(i.hash)).map((i) => this.encode(i, false));
      if (whole.length > 0) await this.putBatch(whole);
      for (const e of [...g.entries.filter((e) => !(e.patch && again.has(e.hash))), ...whole]) {
        if (e.patch) this.stats.patches++;
        else this.stats.whole++;
        this.stats.chunkBytes += e.rawLength;
      }
    });
  }

  /**
   * Sends one batch, retrying what a retry can cure. A retry first asks which of the entries the replicator still
   * lacks: it stores each entry as it arrives, so after a connection cut mid-batch only the rest travels again.
   */
  private async putBatch(entries: Encoded[]): Promise<ChunkBatchResponse> {
    const signal = this.o.signal;
    const putChunks = this.transport.putChunks?.bind(this.transport) as NonNullable<ReplicatorTransport['putChunks']>;
    let sending = entries;
    let retry = false;
    return retrying(async () => {
      if (retry) {
        const missing = new Set(await this.transport.missing(sending.map((e) => e.hash), signal));
        sending = sending.filter((e) => missing.has(e.hash));
      }
      retry = true;
      if (sending.length === 0) return { stored: 0, baseMissing: [] };
      const bytes = sending.reduce((n, e) => n + e.body.length, 0);
      await this.o.limiter?.take(bytes, signal);
      const answer = await putChunks(sending, signal);
      this.stats.wireBytes += bytes;
      return answer;
    }, { ...this.o.retry, ...(signal ? { signal } : {}) });
  }

  /** One chunk's upload body: a patch when change tracking says little changed (and `patch` allows), else whole. */
  private encode(item: UploadItem, patch: boolean): Encoded {
    const runs = item.runs;
    const asPatch = patch && item.base !== undefined && runs !== undefined && runs.reduce((n, [, l]) => n + l, 0) <= item.data.length * PATCH_MAX_SHARE;
    const raw = asPatch ? encodePatch(item.data, runs) : item.data;
    const { body, compressed } = this.o.compress === false ? { body: raw, compressed: false } : compressIfUseful(raw);
    return { hash: item.hash, body, compressed, rawLength: item.data.length, ...(asPatch ? { patch: { base: item.base ?? null, chunkLength: item.data.length } } : {}) };
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
