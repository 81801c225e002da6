import { forEachLimit } from '../../core/concurrency.js';
import { isRefugeError } from '../../core/errors.js';
import { MAX_HASHES_PER_QUERY } from '../../protocol/limits.js';
import type { ChunkBatchResponse } from '../../protocol/schemas.js';
import { BATCH_ENTRY_HEADER, BATCH_TARGET_BYTES, BatchWriter, frameBatch, MAX_BATCH_ENTRIES, type BatchEntry, type FramedBatch, type WrittenBody } from '../../protocol/chunk-batch.js';
import { compressIfUseful, compressInto, encodePatch, encodePatchInto, MAX_REPLICATION_CHUNK_SIZE, patchLength, type Run } from '../../protocol/chunk-encoding.js';
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

/**
 * Bytes of chunks per upload batch (at most one missing-chunks query): one batch fills while earlier ones upload,
 * and each holds copies of its chunks plus their encoded bodies, so this bounds the agent's memory (P11 in
 * docs/benchmarks.md: 16 MiB batches held ~70 MiB). About one batch request (BATCH_TARGET_BYTES).
 */
export const UPLOAD_BATCH_BYTES = 2 * 1024 * 1024;

/** Batch requests under way at once: one uploads while the replicator works on another. */
const BATCHES_IN_FLIGHT = 2;

/** A patch is worth it while it carries at most this share of the chunk; beyond, the whole chunk goes. */
const PATCH_MAX_SHARE = 0.5;

/** Whether `item` goes as a patch: change tracking says little of it changed (its base is known, its runs are few). */
function patchWorthIt(item: UploadItem): boolean {
  const runs = item.runs;
  return item.base !== undefined && runs !== undefined && patchLength(runs) <= item.data.length && runs.reduce((n, [, l]) => n + l, 0) <= item.data.length * PATCH_MAX_SHARE;
}

/**
 * Batches uploading at once while the next one fills. Two: the replicator works on one (its worker threads rebuild
 * and compress the chunks) while the next arrives and is parsed, where one at a time left each side idle half of
 * the time (P3 in docs/benchmarks.md: a small cdp point is a chain of ~20 batches).
 */
const UPLOADS_IN_FLIGHT = 2;

/** Free buffers kept of each kind (chunk copies, batch bodies): one batch fills while the others upload. */
const POOLED = UPLOADS_IN_FLIGHT + 1;

/**
 * Ships chunks to the replicator: asks which of a batch it lacks (deduplication), sends those as patches or whole,
 * zstd-compressed when that helps, within the bandwidth limit, retrying what a retry can cure. Chunks travel
 * several to a request (protocol/chunk-batch.ts): a request costs the replicator more than a small patch does.
 *
 * Memory is bounded (backpressure): a batch fills while at most UPLOADS_IN_FLIGHT earlier batches upload, and `add`
 * waits for one of those before starting another, so a slow replicator slows the reading of chunks instead of
 * growing the agent.
 * And shipping makes no garbage per chunk (P11, docs/benchmarks.md: a fast seed piled up uncollected buffers): a
 * batch's chunks are copied into one reused *slab*, and each is compressed straight into its place in one reused
 * batch body, UPLOADS_IN_FLIGHT + 1 slabs and UPLOADS_IN_FLIGHT bodies at most. When one upload fails, the others
 * are stopped and waited for before the failure is thrown: nothing keeps sending behind the caller's back.
 */
export class ChunkUploader {
  private batch: UploadItem[] = [];
  private batchBytes = 0;
  /** The current batch's chunk copies (see `add`), and the bytes of it they fill. */
  private slab: Buffer | undefined;
  private slabUsed = 0;
  private readonly freeSlabs: Buffer[] = [];
  private readonly freeBodies: Buffer[] = [];
  /** Where a patch is framed before it is compressed into its batch body (grown to the largest patch). */
  private scratch = Buffer.alloc(0);
  private readonly uploading = new Set<Promise<void>>();
  /** The first upload that failed: thrown by the next `add` that rotates, or by `finish`. */
  private failure: { err: unknown } | undefined;
  /** Stops the other uploads once one has failed; every request listens to it (and to the caller's signal). */
  private readonly stop = new AbortController();
  private readonly signal: AbortSignal;
  private queuedBytes = 0;
  /** Whether the replicator takes batch uploads: unknown until the first batch is answered. */
  private batchesWork: boolean | undefined;
  readonly stats = emptyUploadStats();

  constructor(
    private readonly transport: ReplicatorTransport,
    private readonly o: {
      batchBytes?: number;
      concurrency?: number;
      compress?: boolean;
      limiter?: RateLimiter;
      retry?: RetryPolicy;
      signal?: AbortSignal;
      /**
       * False only when nothing of these chunks can have been sent before (the previous cut of this agent process
       * committed): patches then go without a missing-chunks query. The default asks about every chunk.
       */
      askAboutPatches?: boolean;
    } = {},
  ) {
    this.signal = this.stop.signal;
    // Not AbortSignal.any: the caller's signal lives as long as the agent, and one uploader comes per cut.
    o.signal?.addEventListener('abort', this.callerAborted, { once: true });
    if (o.signal?.aborted) this.stop.abort(o.signal.reason);
  }

  private readonly callerAborted = (): void => this.stop.abort(this.o.signal?.reason);

  /** Done with the caller's signal (the uploader finished or failed). */
  private release(): void {
    this.o.signal?.removeEventListener('abort', this.callerAborted);
  }

  /** Bytes accepted by `add` and not yet acknowledged by the replicator. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  private get limit(): number {
    return this.o.batchBytes ?? UPLOAD_BATCH_BYTES;
  }

  /** Queues a chunk. Its bytes are copied, so the caller may reuse `item.data` once this resolves. */
  async add(item: UploadItem): Promise<void> {
    this.batch.push({ ...item, data: this.copy(item.data) });
    this.batchBytes += item.data.length;
    this.queuedBytes += item.data.length;
    if (this.batchBytes >= this.limit || this.batch.length >= MAX_HASHES_PER_QUERY) await this.rotate();
  }

  /**
   * A copy of `data` in the current batch's slab. A batch fills to `limit` plus at most one chunk, and the slab is
   * allocated that large: its pages become resident only as chunks fill them.
   */
  private copy(data: Buffer): Buffer {
    this.slab ??= this.freeSlabs.pop() ?? Buffer.allocUnsafe(this.limit + MAX_REPLICATION_CHUNK_SIZE);
    if (this.slabUsed + data.length > this.slab.length) return Buffer.from(data); // larger than any policy's chunk
    const own = this.slab.subarray(this.slabUsed, this.slabUsed + data.length);
    data.copy(own);
    this.slabUsed += data.length;
    return own;
  }

  /** Uploads what is left and waits for everything; throws the first failure. */
  async finish(): Promise<UploadStats> {
    try {
      if (this.batch.length > 0) await this.rotate();
      await Promise.all(this.uploading); // uploads never reject: a failure is kept in `failure`
      if (this.failure) throw this.failure.err;
      return this.stats;
    } finally {
      this.release();
    }
  }

  /**
   * Stops the uploads under way and waits for them: the caller gave up on this cut for a reason of its own (a disk
   * read failed), and nothing may keep sending behind its back.
   */
  async abort(reason: unknown): Promise<void> {
    if (!this.failure) this.failure = { err: reason };
    this.stop.abort(reason);
    await Promise.all(this.uploading);
    this.release();
  }

  private async rotate(): Promise<void> {
    const batch = this.batch;
    const bytes = this.batchBytes;
    const slab = this.slab;
    this.batch = [];
    this.batchBytes = 0;
    this.slab = undefined;
    this.slabUsed = 0;
    while (this.uploading.size >= UPLOADS_IN_FLIGHT && !this.failure) await Promise.race(this.uploading); // backpressure
    if (this.failure) {
      await Promise.all(this.uploading); // the others, stopped
      this.release();
      throw this.failure.err;
    }
    const upload: Promise<void> = this.send(batch)
      .catch((err: unknown) => {
        if (this.failure) return; // stopped because another failed
        this.failure = { err };
        this.stop.abort(err);
      })
      .finally(() => {
        this.queuedBytes -= bytes;
        this.uploading.delete(upload);
        if (slab && this.freeSlabs.length < POOLED) this.freeSlabs.push(slab); // the batch's chunks are no longer read
      });
    this.uploading.add(upload);
  }

  /**
   * Asks which of the batch's chunks the replicator lacks, except for patches on a first attempt (`askAboutPatches`
   * false): a patch costs at most its own bytes if the replicator has its chunk already (a rare case for changed
   * data: it skips the chunk), while the question costs a round trip per batch, the largest part of a small cdp
   * point's time on the wire (P3 in docs/benchmarks.md). After a failed or abandoned attempt the store may hold most
   * of the patches already (link-faults d): a cut mid-upload), so then every chunk is asked about. A chunk repeated
   * in the batch goes once.
   */
  private async send(batch: UploadItem[]): Promise<void> {
    const signal = this.signal;
    const unasked = (i: UploadItem) => this.o.askAboutPatches === false && patchWorthIt(i);
    const asked = batch.filter((i) => !unasked(i));
    const hashes = [...new Set(asked.map((i) => i.hash))];
    const missing = new Set(hashes.length === 0 ? [] : await retrying(() => this.transport.missing(hashes, signal), { ...this.o.retry, signal }));
    const sent = new Set<string>(); // a hash goes once, as the first patch or missing chunk that carries it
    const toSend = batch.filter((i) => !sent.has(i.hash) && (unasked(i) || missing.has(i.hash)) && Boolean(sent.add(i.hash)));
    this.stats.offered += batch.length;
    this.stats.deduplicated += batch.length - toSend.length;
    if (this.transport.putChunks && this.batchesWork !== false) {
      try {
        if (await this.sendInBatches(toSend)) this.batchesWork = true; // answered: the route exists
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

  /**
   * Sends the chunks in batch requests of about BATCH_TARGET_BYTES, a few in flight. All of them are encoded into one
   * pooled body first; each request sends a run of consecutive entries, a view of that body. Whether any was sent.
   */
  private async sendInBatches(items: UploadItem[]): Promise<boolean> {
    if (items.length === 0) return false;
    const body = this.body(items.reduce((n, i) => n + BATCH_ENTRY_HEADER + i.data.length, 0));
    try {
      const writer = new BatchWriter(body);
      const rawLength = new Map<BatchEntry, number>();
      for (const item of items) rawLength.set(this.encode(writer, item, true), item.data.length);
      const groups: { from: number; to: number }[] = [];
      let bytes = 0;
      for (const [n, entry] of writer.entries.entries()) {
        const group = groups.at(-1);
        if (!group || group.to - group.from >= MAX_BATCH_ENTRIES || bytes + entry.body.length > BATCH_TARGET_BYTES) {
          groups.push({ from: n, to: n + 1 });
          bytes = entry.body.length;
        } else {
          group.to = n + 1;
          bytes += entry.body.length;
        }
      }
      await forEachLimit(groups, BATCHES_IN_FLIGHT, async ({ from, to }) => {
        const batch = writer.framed(from, to);
        const { baseMissing } = await this.putBatch(batch);
        // The replicator lacks the base of these patches (pruned, or the agent's view is stale): send them whole.
        const again = new Set(baseMissing);
        const redo = items.slice(from, to).filter((i, n) => batch.entries[n]?.patch && again.has(i.hash));
        const whole = new BatchWriter(Buffer.allocUnsafe(redo.reduce((n, i) => n + BATCH_ENTRY_HEADER + i.data.length, 0)));
        for (const item of redo) rawLength.set(this.encode(whole, item, false), item.data.length);
        if (redo.length > 0) await this.putBatch(whole.framed());
        for (const e of [...batch.entries.filter((e) => !(e.patch && again.has(e.hash))), ...whole.entries]) {
          if (e.patch) this.stats.patches++;
          else this.stats.whole++;
          this.stats.chunkBytes += rawLength.get(e) ?? 0;
        }
      });
      return true;
    } finally {
      if (this.freeBodies.length < POOLED) this.freeBodies.push(body); // no request reads it any more
    }
  }

  /** A pooled buffer of at least `bytes` for a batch body. */
  private body(bytes: number): Buffer {
    const at = this.freeBodies.findIndex((b) => b.length >= bytes);
    if (at >= 0) return this.freeBodies.splice(at, 1)[0] as Buffer;
    return Buffer.allocUnsafe(Math.max(bytes, this.limit + MAX_REPLICATION_CHUNK_SIZE + 16 * BATCH_ENTRY_HEADER));
  }

  /**
   * Sends one batch, retrying what a retry can cure. A retry first asks which of the entries the replicator still
   * lacks: it stores each entry as it arrives, so after a connection cut mid-batch only the rest travels again.
   */
  private async putBatch(batch: FramedBatch): Promise<ChunkBatchResponse> {
    const signal = this.signal;
    const putChunks = this.transport.putChunks?.bind(this.transport) as NonNullable<ReplicatorTransport['putChunks']>;
    let sending = batch;
    let retry = false;
    return retrying(async () => {
      if (retry) {
        const missing = new Set(await this.transport.missing(sending.entries.map((e) => e.hash), signal));
        if (sending.entries.some((e) => !missing.has(e.hash))) sending = frameBatch(sending.entries.filter((e) => missing.has(e.hash)));
      }
      retry = true;
      if (sending.entries.length === 0) return { stored: 0, baseMissing: [] };
      const bytes = sending.entries.reduce((n, e) => n + e.body.length, 0); // as the replicator counts them
      await this.o.limiter?.take(bytes, signal);
      const answer = await putChunks(sending, signal);
      this.stats.wireBytes += bytes;
      return answer;
    }, { ...this.o.retry, signal });
  }

  /**
   * Appends one chunk's upload to `writer`: a patch when change tracking says little changed (and `patch` allows),
   * else whole; compressed into its place when that helps. A patch is framed in `scratch` first, then compressed.
   */
  private encode(writer: BatchWriter, item: UploadItem, patch: boolean): BatchEntry {
    const runs = item.runs;
    const asPatch = patch && patchWorthIt(item) && runs !== undefined;
    let raw = item.data;
    if (asPatch) {
      const patchBytes = patchLength(runs);
      if (this.scratch.length < patchBytes) this.scratch = Buffer.allocUnsafe(Math.max(patchBytes, 64 * 1024));
      raw = this.scratch.subarray(0, encodePatchInto(this.scratch, item.data, runs));
    }
    const compress = this.o.compress !== false;
    const write = (dst: Buffer): WrittenBody => {
      const n = compress ? compressInto(dst, raw) : -1;
      return n >= 0 ? { length: n, compressed: true } : { length: raw.copy(dst), compressed: false };
    };
    return writer.append(item.hash, asPatch ? { base: item.base ?? null, chunkLength: item.data.length } : undefined, raw.length, write);
  }

  private async upload(item: UploadItem): Promise<void> {
    const runs = item.runs;
    if (item.base !== undefined && runs && patchWorthIt(item)) {
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
    const signal = this.signal;
    await this.o.limiter?.take(body.length, signal);
    await retrying(() => this.transport.putChunk(hash, body, { compressed, ...(patch ? { patch } : {}) }, signal), { ...this.o.retry, signal });
    this.stats.wireBytes += body.length;
  }
}
