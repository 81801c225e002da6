import { forEachLimit } from '../../core/concurrency.js';
import { isRefugeError, RefugeError } from '../../core/errors.js';
import { MAX_HASHES_PER_QUERY } from '../../protocol/limits.js';
import type { ChunkBatchResponse } from '../../protocol/schemas.js';
import { BATCH_ENTRY_HEADER, BATCH_TARGET_BYTES, BatchWriter, frameBatch, MAX_BATCH_ENTRIES, type BatchEntry, type FramedBatch, type WrittenBody } from '../../protocol/chunk-batch.js';
import { compressIfUseful, compressInto, encodePatchInto, MAX_REPLICATION_CHUNK_SIZE, patchLength, type Run } from '../../protocol/chunk-encoding.js';
import { isPatchBaseRefusal } from '../../store/patched-chunks.js';
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
  /** Patches the replicator refused for want of their base (BasesMissingError: the next cut sends them whole). */
  refused: number;
  /** Bytes of the chunks sent (as rebuilt at the replicator), and bytes of request bodies on the wire. */
  chunkBytes: number;
  wireBytes: number;
}

/**
 * A chunk waiting in a batch: a copy of the bytes that will travel, the whole chunk or only its patch. Keeping the
 * patch alone (its runs framed as they go on the wire) is what lets a batch of patches hold dozens of chunks in the
 * memory a few whole ones took: a cdp point of scattered small writes went as one request per eight 256 KiB chunks,
 * about a thousand requests for a point touching 2 GiB (P5 in docs/benchmarks.md).
 */
interface Queued {
  hash: string;
  chunkLength: number;
  /** The whole chunk (when it goes whole). */
  data?: Buffer;
  /** The framed patch (encodePatchInto) and its base (null: zeros), when it goes as a patch. */
  patch?: { bytes: Buffer; base: string | null };
}

/** The held bytes that travel for `q` (before compression). */
const heldBytes = (q: Queued): Buffer => (q.patch ? q.patch.bytes : (q.data as Buffer));

/**
 * A batch's patches whose base chunk the replicator lacks (pruned, lost in a repair, or the agent's view is stale).
 * The uploader kept only their patches, so it cannot send them whole: the cut fails with this error (the rest of
 * the batch is stored), and the agent's next cut, which lists these chunks again, sends every chunk on one of
 * these bases whole (`ChunkUploader`'s `wholeOn`).
 */
export class BasesMissingError extends RefugeError {
  constructor(readonly bases: string[]) {
    super('failed_precondition', `the replicator lacks the base chunk of ${bases.length === 1 ? 'a patch' : `${bases.length} patches`} (${bases.slice(0, 3).join(', ')}${bases.length > 3 ? ', ...' : ''}); the next cut sends those chunks whole`, { details: { missingBases: bases.slice(0, 100) } });
  }
}

export const emptyUploadStats = (): UploadStats => ({ offered: 0, deduplicated: 0, whole: 0, patches: 0, refused: 0, chunkBytes: 0, wireBytes: 0 });

/**
 * Bytes held per upload batch, whole chunks or patches alone (at most one missing-chunks query): one batch fills while earlier ones upload,
 * and each holds copies of its chunks plus their encoded bodies, so this bounds the agent's memory (P11 in
 * docs/benchmarks.md: 16 MiB batches held ~70 MiB). About one batch request (BATCH_TARGET_BYTES).
 */
export const UPLOAD_BATCH_BYTES = 2 * 1024 * 1024;

/** Batch requests under way at once: one uploads while the replicator works on another. */
const BATCHES_IN_FLIGHT = 2;

/** A patch is worth it while it carries at most this share of the chunk; beyond, the whole chunk goes. */
const PATCH_MAX_SHARE = 0.5;

/**
 * Whether `item` goes as a patch: change tracking says little of it changed (its base is known, its runs are few),
 * and its base is not one the replicator lacks.
 */
function patchWorthIt(item: UploadItem, wholeOn?: ReadonlySet<string>): boolean {
  const runs = item.runs;
  if (item.base === undefined || runs === undefined || (item.base !== null && wholeOn?.has(item.base))) return false;
  return patchLength(runs) <= item.data.length && runs.reduce((n, [, l]) => n + l, 0) <= item.data.length * PATCH_MAX_SHARE;
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
 * batch's chunks (or their patches alone, see Queued) are copied into one reused *slab*, and each is compressed straight into its place in one reused
 * batch body, UPLOADS_IN_FLIGHT + 1 slabs and UPLOADS_IN_FLIGHT bodies at most. When one upload fails, the others
 * are stopped and waited for before the failure is thrown: nothing keeps sending behind the caller's back.
 */
export class ChunkUploader {
  private batch: Queued[] = [];
  private batchBytes = 0;
  /** The current batch's chunk copies (see `add`), and the bytes of it they fill. */
  private slab: Buffer | undefined;
  private slabUsed = 0;
  private readonly freeSlabs: Buffer[] = [];
  private readonly freeBodies: Buffer[] = [];
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
      /** Bases the replicator was found to lack (BasesMissingError): chunks on them go whole, never as patches. */
      wholeOn?: ReadonlySet<string>;
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

  /**
   * Whether `item` would travel as a patch (its runs then are all that is read of `item.data`): a caller that read
   * only the bytes of those runs must send nothing else (ship-cut's leaf-digest path).
   */
  goesAsPatch(item: UploadItem): boolean {
    return patchWorthIt(item, this.o.wholeOn);
  }

  /**
   * Queues a chunk: a copy of what will travel (its patch, or the whole chunk), so the caller may reuse
   * `item.data` once this resolves. A batch is full when its copies reach the batch size.
   */
  async add(item: UploadItem): Promise<void> {
    const runs = item.runs;
    const queued: Queued = patchWorthIt(item, this.o.wholeOn) && runs
      ? { hash: item.hash, chunkLength: item.data.length, patch: { bytes: this.take(patchLength(runs), (into) => encodePatchInto(into, item.data, runs)), base: item.base ?? null } }
      : { hash: item.hash, chunkLength: item.data.length, data: this.take(item.data.length, (into) => item.data.copy(into)) };
    const held = heldBytes(queued).length;
    this.batch.push(queued);
    this.batchBytes += held;
    this.queuedBytes += held;
    if (this.batchBytes >= this.limit || this.batch.length >= MAX_HASHES_PER_QUERY) await this.rotate();
  }

  /**
   * `bytes` of the current batch's slab, filled by `fill` (which returns the length it wrote). A batch fills to
   * `limit` plus at most one chunk, and the slab is allocated that large: its pages become resident only as chunks
   * fill them.
   */
  private take(bytes: number, fill: (into: Buffer) => number): Buffer {
    this.slab ??= this.freeSlabs.pop() ?? Buffer.allocUnsafe(this.limit + MAX_REPLICATION_CHUNK_SIZE);
    if (this.slabUsed + bytes > this.slab.length) {
      const own = Buffer.allocUnsafe(bytes); // larger than any policy's chunk
      return own.subarray(0, fill(own));
    }
    const own = this.slab.subarray(this.slabUsed, this.slabUsed + bytes);
    const length = fill(own);
    this.slabUsed += length;
    return own.subarray(0, length);
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
  private async send(batch: Queued[]): Promise<void> {
    const signal = this.signal;
    const unasked = (i: Queued) => this.o.askAboutPatches === false && i.patch !== undefined;
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
    const refused: Queued[] = [];
    await forEachLimit(toSend, this.o.concurrency ?? 4, async (item) => {
      if (!(await this.upload(item))) refused.push(item);
    });
    await this.refusedPatches(refused); // as a batch does: the others are stored first
  }

  /**
   * Patches the replicator refused for want of their base: unless their chunk is stored after all (a patch sent
   * without asking, of a chunk another disk or point stored), the cut fails naming the bases (BasesMissingError).
   */
  private async refusedPatches(refused: Queued[]): Promise<void> {
    if (refused.length === 0) return;
    const missing = new Set(await retrying(() => this.transport.missing([...new Set(refused.map((i) => i.hash))], this.signal), { ...this.o.retry, signal: this.signal }));
    const lacking = new Set<string>();
    for (const i of refused) {
      if (!missing.has(i.hash)) this.stats.deduplicated++;
      else {
        this.stats.refused++;
        lacking.add(i.patch?.base ?? 'zero');
      }
    }
    if (lacking.size > 0) throw new BasesMissingError([...lacking]);
  }

  /**
   * Sends the chunks in batch requests of about BATCH_TARGET_BYTES, a few in flight. All of them are encoded into one
   * pooled body first; each request sends a run of consecutive entries, a view of that body. Whether any was sent.
   */
  private async sendInBatches(items: Queued[]): Promise<boolean> {
    if (items.length === 0) return false;
    const body = this.body(items.reduce((n, i) => n + BATCH_ENTRY_HEADER + heldBytes(i).length, 0));
    try {
      const writer = new BatchWriter(body);
      for (const item of items) this.encode(writer, item);
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
      const refused: Queued[] = [];
      await forEachLimit(groups, BATCHES_IN_FLIGHT, async ({ from, to }) => {
        const batch = writer.framed(from, to);
        const { baseMissing } = await this.putBatch(batch);
        const lacksBase = new Set(baseMissing);
        for (const [n, item] of items.slice(from, to).entries()) {
          const e = batch.entries[n];
          if (e?.patch && lacksBase.has(item.hash)) {
            refused.push(item);
            continue;
          }
          if (item.patch) this.stats.patches++;
          else this.stats.whole++;
          this.stats.chunkBytes += item.chunkLength;
        }
      });
      await this.refusedPatches(refused);
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

  /** Appends one chunk's upload to `writer`, its patch or the whole chunk as queued, compressed into place when that helps. */
  private encode(writer: BatchWriter, item: Queued): BatchEntry {
    const raw = heldBytes(item);
    const compress = this.o.compress !== false;
    const write = (dst: Buffer): WrittenBody => {
      const n = compress ? compressInto(dst, raw) : -1;
      return n >= 0 ? { length: n, compressed: true } : { length: raw.copy(dst), compressed: false };
    };
    return writer.append(item.hash, item.patch ? { base: item.patch.base, chunkLength: item.chunkLength } : undefined, raw.length, write);
  }

  /** Sends one chunk on its own; false when it is a patch whose base the replicator lacks (nothing stored). */
  private async upload(item: Queued): Promise<boolean> {
    if (item.patch) {
      try {
        await this.put(item.hash, item.patch.bytes, { base: item.patch.base, chunkLength: item.chunkLength });
      } catch (err) {
        if (refusesBase(err)) return false;
        throw err;
      }
      this.stats.patches++;
    } else {
      await this.put(item.hash, item.data as Buffer);
      this.stats.whole++;
    }
    this.stats.chunkBytes += item.chunkLength;
    return true;
  }

  private async put(hash: string, raw: Buffer, patch?: ChunkBodyEncoding['patch']): Promise<void> {
    const { body, compressed } = this.o.compress === false ? { body: raw, compressed: false } : compressIfUseful(raw);
    const signal = this.signal;
    await this.o.limiter?.take(body.length, signal);
    await retrying(() => this.transport.putChunk(hash, body, { compressed, ...(patch ? { patch } : {}) }, signal), { ...this.o.retry, signal });
    this.stats.wireBytes += body.length;
  }
}

/**
 * Whether a failed upload refuses a patch for its base, which alone means "send it whole" (docs/protocol.md): the
 * error names the base in `patchBase`; a replicator from before 2026-12-03 said so only in its message.
 */
function refusesBase(err: unknown): boolean {
  return isPatchBaseRefusal(err) || (isRefugeError(err, 'failed_precondition') && /^patch base chunk /.test(err.message));
}
