import { KeyedQueue, forEachLimit } from '../core/concurrency.js';
import { RefugeError, isRefugeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { BLOCK_SIZE, blockDigests, decompressBounded } from '../protocol/chunk-encoding.js';
import type { BatchEntry } from '../protocol/chunk-batch.js';
import type { BlockHashesResponse, ChunkBatchResponse, CommitPointRequest, CommitPointResponse, PointChunksResponse, StageChangesRequest } from '../protocol/schemas.js';
import { chunkCount } from '../store/chunks.js';
import type { PointManifest } from '../store/manifest.js';
import { forEachChunk } from '../store/tree.js';
import { isPatchBaseRefusal, type PatchUpload } from '../store/patched-chunks.js';
import type { ReplicaStore } from '../store/replica-store.js';
import { takeResyncRequest } from '../store/repair.js';
import { inGroups } from './entry-groups.js';

/**
 * The replicator receives an agent's changed chunks, verifies each against its hash, stores them and commits
 * recovery points to the replica store of the replication's target site. It runs inside the vault process by
 * default, or standalone (`refuge replicator`, standalone.ts); it learns where each replication goes, and reports
 * committed points, through a `TargetResolver`, so it never depends on the vault's internals.
 */

export interface ReplicationTarget {
  store: ReplicaStore;
  /** The replication's chunk size (its policy's, else the store's): chunk `i` of a disk is bytes [i * chunkSize, (i + 1) * chunkSize). */
  chunkSize: number;
  /** Records a committed point with whoever tracks points (the vault). Called after the point is durable. */
  onCommitted(manifest: PointManifest, stats: CommitStats): Promise<void>;
  /** Told when the store refuses data for lack of space (`resource_exhausted`), so whoever tracks it can alert. */
  onStoreFull?(err: RefugeError): Promise<void>;
}

/** What a commit adds to the vault's view of a replication (churn, backlog, RPO). */
export interface CommitStats {
  /** Bytes of chunks received for this point (rebuilt size), and bytes of their request bodies on the wire. */
  receivedBytes: number;
  wireBytes: number;
  /** Seconds from the point's capture to its commit. */
  commitLagSeconds: number;
}

export interface TargetResolver {
  /** The target of a replication that is currently replicating; throws (not_found, operation_not_allowed) otherwise. */
  resolve(replicationId: string): Promise<ReplicationTarget>;
}

export interface ReplicationCounters {
  chunksReceived: number;
  /** Bytes of chunks stored (after decompression and patching): what the chunks weigh. */
  bytesReceived: number;
  /** Bytes of chunk request bodies as they arrived: what crossed the wire. */
  wireBytesReceived: number;
  patchesReceived: number;
  chunksRejected: number;
  pointsCommitted: number;
  /** Commits answered from an identical earlier commit (a retry whose first answer was lost). */
  commitsReplayed: number;
  /** Chunk bytes received since the last commit: data still waiting for a point. */
  pendingBytes: number;
  pendingWireBytes: number;
}

/** How an uploaded body is encoded (docs/protocol.md, "Chunk uploads"). */
export interface ReceivedEncoding {
  compressed: boolean;
  patch?: { base: string | null; chunkLength: number };
}

/** Groups of one batch upload rebuilt and stored at once: overlaps base reads (and the body's arrival) with the store's worker threads. */
const BATCH_ENTRIES_IN_FLIGHT = 4;

/** A patch's bytes, decompressed, once its chunk length is one the replication can place. */
function patchBytes(body: Buffer, compressed: boolean, chunkLength: number, chunkSize: number): Buffer {
  if (!Number.isInteger(chunkLength) || chunkLength < 1 || chunkLength > chunkSize) {
    throw new RefugeError('invalid_argument', `patch chunk length ${chunkLength} is outside 1..${chunkSize}, the replication's chunk size`);
  }
  // A patch carries at most the chunk plus 8 bytes of header per run (runs are at least a 4 KiB block in practice).
  return compressed ? decompressBounded(body, 2 * chunkSize) : body;
}

/** `data`, unless it is longer than a chunk of the replication (a commit could never place it). */
function tooLong(hash: string, data: Buffer, chunkSize: number): Buffer {
  if (data.length > chunkSize) throw new RefugeError('invalid_argument', `chunk ${hash} has ${data.length} bytes, more than the replication's chunk size (${chunkSize})`);
  return data;
}

/** One chunk stored: `length` bytes of chunk, `wireLength` bytes as they came over the wire; both pending until a commit. */
function received(c: ReplicationCounters, length: number, wireLength: number): void {
  c.chunksReceived++;
  c.bytesReceived += length;
  c.wireBytesReceived += wireLength;
  c.pendingBytes += length;
  c.pendingWireBytes += wireLength;
}

export class Replicator {
  /** Commits of one replication, one at a time. */
  private readonly commits = new KeyedQueue();
  readonly counters = new Map<string, ReplicationCounters>();
  /**
   * Chunks of batch uploads that arrived and are being stored, by replication and hash. A missing-chunks query
   * waits for those it names: an agent restarting an upload asks what the store lacks while the cut connection's
   * last entries may still be on their way into it, and would otherwise send them again.
   */
  private readonly storing = new Map<string, Map<string, Promise<unknown>>>();

  constructor(
    private readonly targets: TargetResolver,
    private readonly log: Logger = silentLogger,
  ) {}

  private count(replicationId: string): ReplicationCounters {
    let c = this.counters.get(replicationId);
    if (!c) {
      c = { chunksReceived: 0, bytesReceived: 0, wireBytesReceived: 0, patchesReceived: 0, chunksRejected: 0, pointsCommitted: 0, commitsReplayed: 0, pendingBytes: 0, pendingWireBytes: 0 };
      this.counters.set(replicationId, c);
    }
    return c;
  }

  async missingChunks(replicationId: string, hashes: string[]): Promise<string[]> {
    const { store } = await this.targets.resolve(replicationId);
    const storing = this.storing.get(replicationId);
    if (storing) await Promise.allSettled(hashes.flatMap((h) => storing.get(h) ?? []));
    return store.missingChunks(hashes);
  }

  /** The chunk hashes of every disk of a stored point (an agent without its own compares against these). */
  async pointChunks(replicationId: string, pointId: string, o: { sparse?: boolean } = {}): Promise<PointChunksResponse> {
    const { store } = await this.targets.resolve(replicationId);
    await store.blobs.refresh(); // the point may be a seed another process (the vault) wrote
    const point = await store.getPoint(replicationId, pointId);
    const listed = [];
    for (const d of point.disks) listed.push({ disk: d, entries: await store.diskChunkEntries(point, d.name) });
    // A chunk the store no longer has (a repair dropped it as damaged) is listed as unknown (null, or left out), so
    // the agent, finding its own chunk different, sends it again instead of skipping it as equal.
    const missing = new Set(await store.missingChunks([...new Set(listed.flatMap((l) => l.entries.map(([, h]) => h)))]));
    const disks = listed.map(({ disk: d, entries }) => {
      const known = missing.size > 0 ? entries.filter(([, h]) => !missing.has(h)) : entries;
      const head = { name: d.name, sizeBytes: d.sizeBytes, chunkSize: d.chunkSize };
      const count = chunkCount(d.sizeBytes, d.chunkSize);
      // Sparse where that is shorter: a 256 GiB disk holding 1 GiB lists 4,096 chunks, not a million nulls.
      if (o.sparse && known.length * 2 < count) return { ...head, chunks: known };
      const hashes = new Array<string | null>(count).fill(null);
      for (const [i, h] of known) hashes[i] = h;
      return { ...head, hashes };
    });
    return { pointId: point.id, disks };
  }

  /**
   * One page of a disk's non-zero chunks at a point: up to `limit` from chunk `from` on, and where the next page
   * starts. A disk's listing is otherwise one document, which for a disk of millions of chunks outgrows what either
   * side can hold as a JSON string (a 2 TiB disk: 8 million entries, about 600 MB). Chunks the store no longer has
   * are left out, as in `pointChunks`.
   */
  async pointChunkPage(replicationId: string, pointId: string, o: { disk: string; from: number; limit: number }): Promise<PointChunksResponse> {
    const { store } = await this.targets.resolve(replicationId);
    if (o.from === 0) await store.blobs.refresh(); // the point may be a seed another process (the vault) wrote
    const point = await store.getPoint(replicationId, pointId);
    const d = point.disks.find((x) => x.name === o.disk);
    if (!d) return { pointId: point.id, disks: [], next: null };
    const entries: [number, string][] = [];
    let next: number | null = null;
    await forEachChunk(d.root, chunkCount(d.sizeBytes, d.chunkSize), store.blobs, (i, h) => {
      if (entries.length === o.limit) {
        next = i;
        return false;
      }
      entries.push([i, h]);
      return true;
    }, o.from);
    const missing = new Set(await store.missingChunks([...new Set(entries.map(([, h]) => h))]));
    const chunks = missing.size > 0 ? entries.filter(([, h]) => !missing.has(h)) : entries;
    return { pointId: point.id, disks: [{ name: d.name, sizeBytes: d.sizeBytes, chunkSize: d.chunkSize, chunks }], next };
  }

  /** The block digests of stored chunks, so an agent can patch just the blocks that differ (chunk-encoding.ts). */
  async blockHashes(replicationId: string, hashes: string[]): Promise<BlockHashesResponse> {
    const { store } = await this.targets.resolve(replicationId);
    const missing = await store.missingChunks(hashes);
    if (missing.length > 0) throw new RefugeError('failed_precondition', `${missing.length} chunk(s) asked for are not stored`, { details: { missing: missing.slice(0, 20) }, hint: 'send those chunks whole' });
    const chunks = [];
    for (const hash of new Set(hashes)) chunks.push({ hash, blocks: blockDigests(await store.getChunk(hash), BLOCK_SIZE) });
    return { blockSize: BLOCK_SIZE, chunks };
  }

  /** Stores one uploaded chunk, rebuilding it from a compressed body or a patch first; rejects bytes that do not hash to `hash`. */
  async putChunk(replicationId: string, hash: string, body: Buffer, encoding: ReceivedEncoding = { compressed: false }): Promise<void> {
    const target = await this.targets.resolve(replicationId);
    await this.storeChunk(target, this.count(replicationId), hash, body, encoding);
  }

  /**
   * Stores the chunks of one batch upload (protocol/chunk-batch.ts), as many `putChunk`s would, resolving the
   * replication once. Entries are stored as they arrive (`readBatch` yields each once it is whole; `inGroups` gathers
   * whole chunks), a few groups at a time, so that a body cut off mid-way leaves what arrived stored, and the
   * agent's retry sends only the rest. A patch
   * whose base the store lacks is listed in `baseMissing` (the agent fails its cut and sends that chunk whole in the next); any other failure, or
   * the body breaking off, fails the request once the entries under way are stored (uploads are idempotent).
   */
  async putChunks(replicationId: string, entries: AsyncIterable<BatchEntry> | Iterable<BatchEntry>): Promise<ChunkBatchResponse> {
    const target = await this.targets.resolve(replicationId);
    const c = this.count(replicationId);
    const baseMissing: string[] = [];
    let stored = 0;
    await forEachLimit(inGroups(entries), BATCH_ENTRIES_IN_FLIGHT, (group) => this.tracked(replicationId, group, async () => {
      if (group[0]?.patch) {
        const r = await this.storePatches(target, c, group);
        stored += r.stored;
        baseMissing.push(...r.baseMissing);
        return;
      }
      await this.storeWhole(target, c, group);
      stored += group.length;
    }));
    return { stored, baseMissing };
  }

  /** Runs the store of one group of entries, known to `missingChunks` as under way until it settles. */
  private async tracked(replicationId: string, group: readonly BatchEntry[], store: () => Promise<void>): Promise<void> {
    let storing = this.storing.get(replicationId);
    if (!storing) this.storing.set(replicationId, (storing = new Map<string, Promise<unknown>>()));
    const work = store();
    for (const e of group) storing.set(e.hash, work);
    try {
      await work;
    } finally {
      for (const e of group) if (storing.get(e.hash) === work) storing.delete(e.hash);
      if (storing.size === 0 && this.storing.get(replicationId) === storing) this.storing.delete(replicationId);
    }
  }

  /**
   * Patches of a batch, rebuilt in as few worker tasks as the store can (store.putPatchedChunks). A patch whose base
   * is missing or damaged is listed (the agent sends that chunk whole in its next cut); any other refusal fails the request, once
   * the group's other chunks are stored.
   */
  private async storePatches(target: ReplicationTarget, c: ReplicationCounters, group: readonly BatchEntry[]): Promise<{ stored: number; baseMissing: string[] }> {
    const { store, chunkSize } = target;
    const uploads: PatchUpload[] = [];
    const wireLengths: number[] = [];
    const refused: Error[] = [];
    for (const e of group) {
      const { base, chunkLength } = e.patch as { base: string | null; chunkLength: number };
      try {
        uploads.push({ hash: e.hash, base, chunkLength, patch: patchBytes(e.body, e.compressed, chunkLength, chunkSize) });
        wireLengths.push(e.body.length);
      } catch (err) {
        refused.push(err as Error);
      }
    }
    // A failure of the store itself (a pack write that found the disk full) is reported as storeWhole's is.
    const outcomes = await this.rejecting(target, c, () => store.putPatchedChunks(uploads));
    const baseMissing: string[] = [];
    let stored = 0;
    for (const [n, o] of outcomes.entries()) {
      const u = uploads[n] as PatchUpload;
      if ('rawLength' in o) {
        received(c, o.rawLength, wireLengths[n] as number);
        c.patchesReceived++;
        stored++;
      } else if (isPatchBaseRefusal(o.error)) {
        baseMissing.push(u.hash);
        c.chunksRejected++; // as the store refused it (the agent sends it whole next)
      } else {
        refused.push(o.error);
      }
    }
    const answers = await Promise.all(refused.map((err) => this.rejected(target, c, err)));
    if (answers.length > 0) throw answers[0];
    return { stored, baseMissing };
  }

  /** Whole chunks of a batch, in one task for the store's workers (store.putChunks). */
  private async storeWhole(target: ReplicationTarget, c: ReplicationCounters, group: readonly BatchEntry[]): Promise<void> {
    const items = await this.rejecting(target, c, async () => {
      const rebuilt = group.map((e) => ({ hash: e.hash, data: tooLong(e.hash, e.compressed ? decompressBounded(e.body, target.chunkSize) : e.body, target.chunkSize) }));
      await target.store.putChunks(rebuilt);
      return rebuilt;
    });
    for (const [n, e] of group.entries()) received(c, (items[n] as { data: Buffer }).data.length, e.body.length);
  }

  private async storeChunk(target: ReplicationTarget, c: ReplicationCounters, hash: string, body: Buffer, encoding: ReceivedEncoding): Promise<void> {
    const { store, chunkSize } = target;
    const length = await this.rejecting(target, c, async () => {
      if (encoding.patch) {
        const { base, chunkLength } = encoding.patch;
        return store.putPatchedChunk(hash, base, patchBytes(body, encoding.compressed, chunkLength, chunkSize), chunkLength);
      }
      const data = tooLong(hash, encoding.compressed ? decompressBounded(body, chunkSize) : body, chunkSize);
      const length = data.length; // read first: a given buffer is detached (length 0) once the worker has it
      // Bytes decompressed here are this call's own: the store's worker may take their memory instead of a copy.
      await store.putChunk(hash, data, { give: data !== body });
      return length;
    });
    received(c, length, body.length);
    if (encoding.patch) c.patchesReceived++;
  }

  /** Runs one store of received chunks; a failure is counted as a rejection, and a full store reported. */
  private async rejecting<T>(target: ReplicationTarget, c: ReplicationCounters, store: () => Promise<T>): Promise<T> {
    try {
      return await store();
    } catch (err) {
      throw await this.rejected(target, c, err);
    }
  }

  /** Counts a refused chunk, reports a full store, and gives the error to answer with. */
  private async rejected(target: ReplicationTarget, c: ReplicationCounters, err: unknown): Promise<unknown> {
    await this.reportFull(target, err);
    c.chunksRejected++;
    // Bytes that do not match their hash are the sender's fault here (the store rejected them, nothing stored).
    return isRefugeError(err, 'integrity') ? new RefugeError('invalid_argument', err.message, { cause: err }) : err;
  }

  /** Stores one part of a long change list ahead of its commit (store/staging.ts). */
  async stageChanges(replicationId: string, req: StageChangesRequest): Promise<void> {
    const target = await this.targets.resolve(replicationId);
    await target.store.stageChanges(replicationId, req.stageId, req.part, req.disks).catch(async (err: unknown) => {
      await this.reportFull(target, err);
      throw err;
    });
  }

  /** Commits a point; commits of one replication run one at a time and must name the latest point as parent. */
  async commitPoint(replicationId: string, req: CommitPointRequest): Promise<CommitPointResponse> {
    return this.commits.run(replicationId, () => this.commitNow(replicationId, req));
  }

  private async commitNow(replicationId: string, req: CommitPointRequest): Promise<CommitPointResponse> {
    const target = await this.targets.resolve(replicationId);
    const ids = await target.store.listPointIds(replicationId);
    const latest = ids.at(-1) ?? null;
    if (await takeResyncRequest(target.store, replicationId)) {
      // `refuge store repair` dropped damaged chunks: the agent's resync (every chunk against the latest point,
      // uploading what the store lacks) brings them back from the source.
      throw new RefugeError('conflict', 'the replica store was repaired and lacks chunks this replication used; resynchronize', {
        details: { latestPointId: latest },
        hint: 'the agent compares every chunk with the latest point and uploads the ones the store lacks',
      });
    }
    if (req.parentId !== latest) {
      const replayed = latest === null ? undefined : await this.sameCommit(target.store, replicationId, latest, req);
      if (replayed) {
        // Record it again: if the first attempt failed while telling the vault, this is how the vault learns of it.
        await target.onCommitted(replayed, { receivedBytes: 0, wireBytes: 0, commitLagSeconds: (Date.parse(replayed.committedAt) - Date.parse(replayed.capturedAt)) / 1000 });
        this.count(replicationId).commitsReplayed++;
        return { pointId: replayed.id, capturedAt: replayed.capturedAt, changedBytes: replayed.stats.changedBytes };
      }
      if (latest !== null) {
        // The store's latest point may be one the vault never heard of (a replicator killed between writing its
        // manifest and recording it): record it now, or the vault keeps naming the older point as the agent's parent
        // and the agent goes back and forth between the two for ever. Recording is idempotent.
        const m = await target.store.getPoint(replicationId, latest);
        await target.onCommitted(m, { receivedBytes: 0, wireBytes: 0, commitLagSeconds: (Date.parse(m.committedAt) - Date.parse(m.capturedAt)) / 1000 });
      }
      throw new RefugeError('conflict', `point parent ${req.parentId ?? 'none'} is not the latest point (${latest ?? 'none'})`, {
        details: { latestPointId: latest },
        hint: 'the agent resynchronizes against the latest point by hash comparison',
      });
    }
    const manifest = await target.store.commitPoint({
      replicationId,
      parentId: req.parentId,
      capturedAt: new Date(req.capturedAt),
      consistency: req.consistency,
      disks: req.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes, changes: d.changes })),
      chunkSize: target.chunkSize,
      ...(req.stageId !== undefined ? { stageId: req.stageId } : {}),
    }).catch(async (err: unknown) => {
      await this.reportFull(target, err);
      throw err;
    });
    const c = this.count(replicationId);
    const stats: CommitStats = {
      receivedBytes: c.pendingBytes,
      wireBytes: c.pendingWireBytes,
      commitLagSeconds: (Date.parse(manifest.committedAt) - Date.parse(manifest.capturedAt)) / 1000,
    };
    c.pendingBytes = 0;
    c.pendingWireBytes = 0;
    await target.onCommitted(manifest, stats);
    c.pointsCommitted++;
    this.log.info({ replicationId, point: manifest.id, changedBytes: manifest.stats.changedBytes, wireBytes: stats.wireBytes }, 'point committed');
    return { pointId: manifest.id, capturedAt: manifest.capturedAt, changedBytes: manifest.stats.changedBytes };
  }

  /** A full store (reliability R3) is the operator's to fix: tell the target, never fail the request on telling. */
  private async reportFull(target: ReplicationTarget, err: unknown): Promise<void> {
    if (!isRefugeError(err, 'resource_exhausted') || !target.onStoreFull) return;
    await target.onStoreFull(err).catch((e: unknown) => this.log.warn({ err: e }, 'reporting a full replica store failed'));
  }

  /**
   * The latest point, if it is exactly what `req` asks to commit: the agent committed it, lost the answer (a
   * dropped connection) and retried. Same parent and same capture instant identify it: an agent never cuts twice in
   * the same millisecond on the same parent.
   */
  private async sameCommit(store: ReplicaStore, replicationId: string, latest: string, req: CommitPointRequest): Promise<PointManifest | undefined> {
    const m = await store.getPoint(replicationId, latest);
    return m.parentId === req.parentId && m.capturedAt === new Date(req.capturedAt).toISOString() ? m : undefined;
  }
}
