import { Type, type Static } from 'typebox';
import { ID_PATTERN } from '../core/ids.js';
import { NAME_PATTERN } from '../core/names.js';
import { MAX_BLOCK_HASH_CHUNKS, MAX_HASHES_PER_QUERY, MAX_LISTED_CHUNKS, MAX_STAGE_PART_ENTRIES } from './limits.js';

/**
 * Wire messages between an agent and the vault (registration, heartbeat) and between an agent and a replicator
 * (chunk upload, point commit). Both sides validate against these schemas; docs/protocol.md describes the
 * exchange. Kept apart from either side so the agent never imports the replicator or the vault, nor they it.
 */

export const Name = Type.String({ pattern: NAME_PATTERN, description: 'lowercase letters, digits and dashes' });
export const Hash = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'hex SHA-256, or a blob name of the store (store/chunks.ts blobName: 64 hex digits either way)' });
export const Timestamp = Type.String({ format: 'date-time' });

export const DiskFacts = Type.Object(
  {
    name: Name,
    sizeBytes: Type.Integer({ minimum: 1 }),
    /** Where the disk is on the machine's host; informational (shown to operators). */
    path: Type.Optional(Type.String({ maxLength: 4096 })),
  },
  { additionalProperties: false },
);
export type DiskFacts = Static<typeof DiskFacts>;

/** How a recovered copy of the machine boots. `kernel` boot is direct kernel boot (the demo guest). */
export const BootSpec = Type.Union([
  Type.Object({ kind: Type.Literal('disk') }, { additionalProperties: false }),
  Type.Object(
    {
      kind: Type.Literal('kernel'),
      kernel: Type.String({ minLength: 1, maxLength: 4096 }),
      initrd: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
      cmdline: Type.Optional(Type.String({ maxLength: 4096 })),
    },
    { additionalProperties: false },
  ),
]);
export type BootSpec = Static<typeof BootSpec>;

export const MachineFacts = Type.Object(
  {
    name: Name,
    hostname: Type.String({ minLength: 1, maxLength: 253 }),
    os: Type.String({ maxLength: 200 }),
    cpus: Type.Integer({ minimum: 1, maximum: 1024 }),
    memoryMiB: Type.Integer({ minimum: 16 }),
    disks: Type.Array(DiskFacts, { minItems: 1, maxItems: 64 }),
    boot: BootSpec,
    /** Network interfaces and the source network each is on (network mappings translate them at failover). */
    nics: Type.Optional(
      Type.Array(
        Type.Object({ name: Name, network: Name, ipv4: Type.Optional(Type.String({ format: 'ipv4' })) }, { additionalProperties: false }),
        { maxItems: 32 },
      ),
    ),
  },
  { additionalProperties: false },
);
export type MachineFacts = Static<typeof MachineFacts>;

export const RegisterRequest = Type.Object(
  {
    site: Name,
    agentVersion: Type.String({ maxLength: 64 }),
    machine: MachineFacts,
  },
  { additionalProperties: false },
);
export type RegisterRequest = Static<typeof RegisterRequest>;

export const RegisterResponse = Type.Object({ machineId: Type.String(), machine: Name, vault: Name });
export type RegisterResponse = Static<typeof RegisterResponse>;

export const ReplicationProgress = Type.Object(
  {
    /** seeding: the first point; shipping: a later point (scanning: agents before 0.2). */
    phase: Type.Union([Type.Literal('seeding'), Type.Literal('shipping'), Type.Literal('scanning'), Type.Literal('idle')]),
    doneBytes: Type.Integer({ minimum: 0 }),
    totalBytes: Type.Integer({ minimum: 0 }),
    /** Bytes written at the source and not yet in a committed point: tracked but unshipped, plus in flight. */
    pendingBytes: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type ReplicationProgress = Static<typeof ReplicationProgress>;

/** How one endpoint the agent needs (vault API, replicator) looked from the agent, through its proxy if any. */
export const EndpointReachability = Type.Object(
  {
    role: Type.Union([Type.Literal('vault'), Type.Literal('replicator')]),
    url: Type.String({ maxLength: 2048 }),
    host: Type.String({ maxLength: 253 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    dns: Type.Boolean(),
    tcp: Type.Boolean(),
    /** `trusted`, `untrusted` (issuer not in the agent's trust), `expired`, `bad-name`, `n/a` (plain HTTP or no TCP). */
    tls: Type.Union([Type.Literal('trusted'), Type.Literal('untrusted'), Type.Literal('expired'), Type.Literal('bad-name'), Type.Literal('n/a')]),
    issuer: Type.Optional(Type.String({ maxLength: 1000 })),
    certificateNotAfter: Type.Optional(Type.String({ maxLength: 64 })),
    error: Type.Optional(Type.String({ maxLength: 1000 })),
    milliseconds: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type EndpointReachability = Static<typeof EndpointReachability>;

/** What an agent reports now and then about its surroundings, for the networking and certificate readiness checks. */
export const AgentReport = Type.Object(
  {
    checkedAt: Timestamp,
    proxy: Type.Optional(Type.String({ maxLength: 2048 })),
    endpoints: Type.Array(EndpointReachability, { maxItems: 16 }),
  },
  { additionalProperties: false },
);
export type AgentReport = Static<typeof AgentReport>;

/** The host an agent runs on, sent with its heartbeats and kept on the machine record (readiness may use it). */
export const HostFacts = Type.Object(
  {
    os: Type.String({ maxLength: 200 }),
    kernel: Type.String({ maxLength: 200 }),
    arch: Type.String({ maxLength: 64 }),
    cpuModel: Type.String({ maxLength: 200 }),
    cpus: Type.Integer({ minimum: 1 }),
    memoryBytes: Type.Integer({ minimum: 0 }),
    agentVersion: Type.String({ maxLength: 64 }),
    disks: Type.Array(Type.Object({ name: Name, sizeBytes: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }), { maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type HostFacts = Static<typeof HostFacts>;

export const HeartbeatRequest = Type.Object(
  {
    agentVersion: Type.String({ maxLength: 64 }),
    host: Type.Optional(HostFacts),
    progress: Type.Optional(ReplicationProgress),
    lastError: Type.Optional(Type.String({ maxLength: 2000 })),
    /** The agent's clock when it sent the heartbeat (the vault measures the skew). */
    sentAt: Type.Optional(Timestamp),
    report: Type.Optional(AgentReport),
    /** The site the agent runs at: only an agent at the replication's source site is told to replicate. */
    site: Type.Optional(Name),
  },
  { additionalProperties: false },
);
export type HeartbeatRequest = Static<typeof HeartbeatRequest>;

/** What the vault tells an agent to do: replicate (with the policy's settings) or nothing. */
const BlobNamingSchema = Type.Union([Type.Literal('sha256'), Type.Literal('leaf16')]);

export const ReplicationAssignment = Type.Object({
  replicationId: Type.String(),
  /** Only `replicate` makes the agent capture; any other value means stop capturing (e.g. after failover). */
  mode: Type.Union([Type.Literal('replicate'), Type.Literal('stop')]),
  crashIntervalSeconds: Type.Number({ minimum: 1 }),
  /** The target store's chunk size: the agent hashes the disk in chunks of exactly this size. */
  chunkSize: Type.Integer({ minimum: 4096 }),
  /** How the target store names chunks (its format, store/chunks.ts): what the agent hashes with. Absent: sha256. */
  naming: Type.Optional(BlobNamingSchema),
  replicatorUrl: Type.String(),
  /** The newest committed point, so an agent that lost its state can resume by hash comparison. */
  latestPointId: Type.Union([Type.String(), Type.Null()]),
  /** Cut an app-consistent point (pre/post hooks around the cut) this often; null or absent: never. */
  appIntervalSeconds: Type.Optional(Type.Union([Type.Number({ minimum: 1 }), Type.Null()])),
  /** The consistency group of the replication: the agent then polls for group cuts (protocol/group-cut.ts). */
  group: Type.Optional(Type.Union([Name, Type.Null()])),
  /** Compare every chunk against `latestPointId` for the next point if the agent's last point is older (resync). */
  resyncAfter: Type.Optional(Timestamp),
  /** Cut a point now if the agent's last point is older (the final point of a planned failover). */
  cutAfter: Type.Optional(Timestamp),
  /**
   * Heartbeat again within this many seconds, sooner than the agent's own interval: an instruction is about to
   * change (a re-protect's new source, told `stop` until the seed is in place, may ship in a moment).
   */
  heartbeatSoonSeconds: Type.Optional(Type.Number({ minimum: 0.1 })),
  /**
   * A re-protect is seeding the store this agent is about to ship to (in chunks of `chunkSize`), while the agent is
   * still told `stop`: it may read and hash its disks now, so that once it may ship only the chunks whose hashes
   * differ from the seed's are read again (agent/prehash.ts).
   */
  reprotectPending: Type.Optional(Type.Object({ chunkSize: Type.Integer({ minimum: 4096 }), naming: Type.Optional(BlobNamingSchema) })),
});
export type ReplicationAssignment = Static<typeof ReplicationAssignment>;

export const HeartbeatResponse = Type.Object({
  serverTime: Timestamp,
  replication: Type.Union([ReplicationAssignment, Type.Null()]),
});
export type HeartbeatResponse = Static<typeof HeartbeatResponse>;

// --- agent -> replicator -------------------------------------------------------------------------------

export { MAX_HASHES_PER_QUERY };

export const MissingChunksRequest = Type.Object(
  { hashes: Type.Array(Hash, { maxItems: MAX_HASHES_PER_QUERY }) },
  { additionalProperties: false },
);
export type MissingChunksRequest = Static<typeof MissingChunksRequest>;
export const MissingChunksResponse = Type.Object({ missing: Type.Array(Hash) });
export type MissingChunksResponse = Static<typeof MissingChunksResponse>;

/** The answer to a chunk batch (chunk-batch.ts): every entry stored, except patches whose base the store lacks. */
export const ChunkBatchResponse = Type.Object({ stored: Type.Integer({ minimum: 0 }), baseMissing: Type.Array(Hash) });
export type ChunkBatchResponse = Static<typeof ChunkBatchResponse>;

export const ChunkChange = Type.Tuple([Type.Integer({ minimum: 0 }), Type.Union([Hash, Type.Null()])]);

/** One part of a long change list, sent ahead of its commit (docs/protocol.md, "Staged changes"). */
export const StageChangesRequest = Type.Object(
  {
    stageId: Type.String({ pattern: ID_PATTERN }),
    part: Type.Integer({ minimum: 0, maximum: 999_999 }),
    disks: Type.Array(
      Type.Object({ name: Name, changes: Type.Array(ChunkChange, { maxItems: MAX_STAGE_PART_ENTRIES }) }, { additionalProperties: false }),
      { minItems: 1, maxItems: 64 },
    ),
  },
  { additionalProperties: false },
);
export type StageChangesRequest = Static<typeof StageChangesRequest>;

export const CommitPointRequest = Type.Object(
  {
    /** The point the changes apply to; must be the replication's latest point (or null for the first). */
    parentId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    /** Changes sent before in parts (StageChangesRequest): they apply first, then `disks`' own. */
    stageId: Type.Optional(Type.String({ pattern: ID_PATTERN })),
    capturedAt: Timestamp,
    consistency: Type.Union([Type.Literal('crash'), Type.Literal('app')]),
    disks: Type.Array(
      Type.Object(
        {
          name: Name,
          sizeBytes: Type.Integer({ minimum: 1 }),
          changes: Type.Array(ChunkChange),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 64 },
    ),
  },
  { additionalProperties: false },
);
export type CommitPointRequest = Static<typeof CommitPointRequest>;

export const CommitPointResponse = Type.Object({
  pointId: Type.String(),
  capturedAt: Timestamp,
  changedBytes: Type.Integer(),
});
export type CommitPointResponse = Static<typeof CommitPointResponse>;

/** The chunk hashes of a stored point, so an agent without its own can compare chunk by chunk (resync, re-protect). */
/** `?listing=sparse`: each disk may come as `chunks` (its non-zero chunks only) instead of `hashes` (docs/protocol.md). */
/**
 * With `disk` (and `listing=sparse`): one page of that disk's non-zero chunks, from chunk `from` on, at most `limit`
 * (MAX_LISTED_CHUNKS); the answer's `next` is where the next page starts, null after the last.
 */
export const PointChunksQuery = Type.Object(
  {
    listing: Type.Optional(Type.Literal('sparse')),
    disk: Type.Optional(Name),
    from: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'chunk index' })),
    limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: `page size, 1-${MAX_LISTED_CHUNKS}` })),
  },
  { additionalProperties: false },
);
export const PointChunksResponse = Type.Object({
  pointId: Type.String(),
  disks: Type.Array(Type.Object({
    name: Type.String(),
    sizeBytes: Type.Integer({ minimum: 0 }),
    chunkSize: Type.Integer({ minimum: 1 }),
    /** Every chunk's hash in order, null for a zero (or unknown) chunk. */
    hashes: Type.Optional(Type.Array(Type.Union([Hash, Type.Null()]))),
    /** [index, hash] of the non-zero chunks, ascending; a chunk not listed is zero (or unknown). */
    chunks: Type.Optional(Type.Array(Type.Tuple([Type.Integer({ minimum: 0 }), Hash]))),
  })),
  /** A paged listing (`disk` asked): the chunk index the next page starts at, null when this page was the last. */
  next: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])),
});
export type PointChunksResponse = Static<typeof PointChunksResponse>;

export { MAX_BLOCK_HASH_CHUNKS };
export const BlockHashesRequest = Type.Object({ hashes: Type.Array(Hash, { minItems: 1, maxItems: MAX_BLOCK_HASH_CHUNKS }) }, { additionalProperties: false });
export type BlockHashesRequest = Static<typeof BlockHashesRequest>;
/** Per stored chunk, the digest of each of its `blockSize` blocks (chunk-encoding.ts `blockDigests`). */
export const BlockHashesResponse = Type.Object({
  blockSize: Type.Integer({ minimum: 512 }),
  chunks: Type.Array(Type.Object({ hash: Hash, blocks: Type.Array(Type.String()) })),
});
export type BlockHashesResponse = Static<typeof BlockHashesResponse>;
