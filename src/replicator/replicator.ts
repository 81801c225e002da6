import { RefugeError, isRefugeError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/log.js';
import type { CommitPointRequest, CommitPointResponse } from '../protocol/schemas.js';
import type { PointManifest } from '../store/manifest.js';
import type { ReplicaStore } from '../store/replica-store.js';

/**
 * The replicator receives an agent's changed chunks, verifies each against its hash, stores them and commits
 * recovery points to the replica store of the replication's target site. It runs inside the vault process by
 * default; it learns where each replication goes, and reports committed points, through a `TargetResolver`, so
 * it never depends on the vault's internals and can run standalone later.
 */

export interface ReplicationTarget {
  store: ReplicaStore;
  /** Records a committed point with whoever tracks points (the vault). Called after the point is durable. */
  onCommitted(manifest: PointManifest): Promise<void>;
}

export interface TargetResolver {
  /** The target of a replication that is currently replicating; throws (not_found, operation_not_allowed) otherwise. */
  resolve(replicationId: string): Promise<ReplicationTarget>;
}

export interface ReplicationCounters {
  chunksReceived: number;
  bytesReceived: number;
  pointsCommitted: number;
}

export class Replicator {
  private readonly commitLocks = new Map<string, Promise<unknown>>();
  readonly counters = new Map<string, ReplicationCounters>();

  constructor(
    private readonly targets: TargetResolver,
    private readonly log: Logger = silentLogger,
  ) {}

  private count(replicationId: string): ReplicationCounters {
    let c = this.counters.get(replicationId);
    if (!c) this.counters.set(replicationId, (c = { chunksReceived: 0, bytesReceived: 0, pointsCommitted: 0 }));
    return c;
  }

  async missingChunks(replicationId: string, hashes: string[]): Promise<string[]> {
    const { store } = await this.targets.resolve(replicationId);
    return store.missingChunks(hashes);
  }

  async putChunk(replicationId: string, hash: string, data: Buffer): Promise<void> {
    const { store } = await this.targets.resolve(replicationId);
    try {
      await store.putChunk(hash, data);
    } catch (err) {
      // Bytes that do not match their hash are the sender's fault here (the store rejected them, nothing stored).
      if (isRefugeError(err, 'integrity')) throw new RefugeError('invalid_argument', err.message, { cause: err });
      throw err;
    }
    const c = this.count(replicationId);
    c.chunksReceived++;
    c.bytesReceived += data.length;
  }

  /** Commits a point; commits of one replication run one at a time and must name the latest point as parent. */
  async commitPoint(replicationId: string, req: CommitPointRequest): Promise<CommitPointResponse> {
    const previous = this.commitLocks.get(replicationId) ?? Promise.resolve();
    const work = previous.catch(() => undefined).then(() => this.commitNow(replicationId, req));
    this.commitLocks.set(replicationId, work);
    try {
      return await work;
    } finally {
      if (this.commitLocks.get(replicationId) === work) this.commitLocks.delete(replicationId);
    }
  }

  private async commitNow(replicationId: string, req: CommitPointRequest): Promise<CommitPointResponse> {
    const target = await this.targets.resolve(replicationId);
    const ids = await target.store.listPointIds(replicationId);
    const latest = ids.at(-1) ?? null;
    if (req.parentId !== latest) {
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
    });
    await target.onCommitted(manifest);
    this.count(replicationId).pointsCommitted++;
    this.log.info({ replicationId, point: manifest.id, changedBytes: manifest.stats.changedBytes }, 'point committed');
    return { pointId: manifest.id, capturedAt: manifest.capturedAt, changedBytes: manifest.stats.changedBytes };
  }
}
