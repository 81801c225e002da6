import { Type, type Static } from 'typebox';
import type { PointManifest } from '../store/manifest.js';
import type { SiteStoreConfig } from '../store/open-store.js';
import { Name, Timestamp } from './schemas.js';

/**
 * Wire messages between a standalone replicator (`refuge replicator`) and the vault (docs/protocol.md, "Standalone
 * replicator -> vault"). The replicator connects outbound to the vault like an agent: it reports itself (and so
 * registers), asks whether a replication may send it data, and records the points it commits.
 */

export const ReplicationStats = Type.Object(
  {
    replicationId: Type.String({ maxLength: 64 }),
    pointsCommitted: Type.Integer({ minimum: 0 }),
    /** Chunk bytes received and their bytes on the wire since the replicator started (churn). */
    bytesReceived: Type.Integer({ minimum: 0 }),
    wireBytesReceived: Type.Integer({ minimum: 0 }),
    /** Chunk bytes received but not yet in a committed point. */
    pendingBytes: Type.Integer({ minimum: 0 }),
    lastCommittedAt: Type.Union([Timestamp, Type.Null()]),
    /** Capture-to-commit seconds of the last point (the replication's RPO right after that commit). */
    lastCommitLagSeconds: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
  },
  { additionalProperties: false },
);
export type ReplicationStats = Static<typeof ReplicationStats>;

export const StoreFull = Type.Object(
  {
    /** The replication whose data could not be stored, and the store's own words (with its hint, if any). */
    replication: Type.String({ maxLength: 64 }),
    message: Type.String({ maxLength: 2048 }),
    hint: Type.Optional(Type.String({ maxLength: 2048 })),
    at: Timestamp,
  },
  { additionalProperties: false },
);
export type StoreFull = Static<typeof StoreFull>;

/** PUT /api/v1/vaults/{vault}/replicators/{site}: registers (or refreshes) the replicator serving `site`. */
export const ReplicatorReport = Type.Object(
  {
    /** Where agents reach this replicator's endpoints (its /replicator/v1 base URL). */
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    version: Type.String({ maxLength: 64 }),
    replications: Type.Array(ReplicationStats, { maxItems: 100_000 }),
    /**
     * Set while the site's replica store refused this replicator's last write for lack of space (the vault raises
     * its `replica-store-full` alert); cleared by the next commit that goes through. Absent from older replicators.
     */
    storeFull: Type.Optional(Type.Union([StoreFull, Type.Null()])),
  },
  { additionalProperties: false },
);
export type ReplicatorReport = Static<typeof ReplicatorReport>;

export const ReplicatorReportResponse = Type.Object({
  site: Name,
  /**
   * The site's replica store, which this replicator commits to: a store location as in a site's configuration
   * (`{ kind: filesystem, path }`, `{ kind: s3, ... }`, `{ kind: azure, ... }`, plus `encryptionKeyFile` when the
   * store is encrypted). It may carry the object store's credentials: it is sent only to an authenticated
   * replicator over HTTPS and never logged.
   */
  store: Type.Unsafe<SiteStoreConfig>(Type.Object({ kind: Type.String() }, { additionalProperties: true })),
  /** Report again within this many seconds, or agents go back to the vault's own replicator. */
  reportIntervalSeconds: Type.Number({ minimum: 1 }),
  /**
   * Whether the vault records recovery points in the site's store: the replicator then never creates the store
   * anew (a missing store is an unmounted volume or a wrong bucket, not a new site). Absent from older vaults.
   */
  storeHoldsPoints: Type.Optional(Type.Boolean()),
});
export type ReplicatorReportResponse = Static<typeof ReplicatorReportResponse>;

/** GET /api/v1/vaults/{vault}/replicators/{site}/replications/{id}: may this replication send data here? */
export const ReplicationTargetInfo = Type.Object({
  replicationId: Type.String(),
  name: Name,
  state: Type.String(),
  targetSite: Name,
  /** True while the replication is replicating to this site. */
  accepting: Type.Boolean(),
  /** The replication's chunk size in KiB, from its policy; absent or null: the store's own. */
  chunkSizeKiB: Type.Optional(Type.Union([Type.Integer({ minimum: 4 }), Type.Null()])),
  /** When asked about an agent's certificate (`?agent=FINGERPRINT`): why that agent may not send data, if it may not. */
  agentRefused: Type.Optional(Type.String()),
});
export type ReplicationTargetInfo = Static<typeof ReplicationTargetInfo>;

/** POST /api/v1/vaults/{vault}/replicators/{site}/points: a point the replicator committed to the store. */
export const RecordPointRequest = Type.Object(
  {
    id: Type.String({ maxLength: 64 }),
    replicationId: Type.String({ maxLength: 64 }),
    parentId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    capturedAt: Timestamp,
    committedAt: Timestamp,
    consistency: Type.Union([Type.Literal('crash'), Type.Literal('app')]),
    changedBytes: Type.Integer({ minimum: 0 }),
    storedBytes: Type.Integer({ minimum: 0 }),
    /** The point's churn per disk (absent: a replicator from before 2026-12-02, or a manifest without it). */
    diskChurn: Type.Optional(Type.Array(Type.Object({ name: Name, changedBytes: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }), { maxItems: 64 })),
  },
  { additionalProperties: false },
);
export type RecordPointRequest = Static<typeof RecordPointRequest>;

/** What the vault records of a committed point (both replicators, the vault's own and a standalone one, send this). */
export function pointRecord(m: PointManifest): RecordPointRequest {
  return {
    id: m.id,
    replicationId: m.replicationId,
    parentId: m.parentId,
    capturedAt: m.capturedAt,
    committedAt: m.committedAt,
    consistency: m.consistency,
    changedBytes: m.stats.changedBytes,
    storedBytes: m.stats.storedBytes,
    ...(m.disks.every((d) => d.changedBytes !== undefined) ? { diskChurn: m.disks.map((d) => ({ name: d.name, changedBytes: d.changedBytes ?? 0 })) } : {}),
  };
}
