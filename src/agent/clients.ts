import { requestJson, type HttpConnection } from '../core/http-client.js';
import { BATCH_CONTENT_TYPE, type FramedBatch } from '../protocol/chunk-batch.js';
import { CHUNK_CONTENT_TYPE, CHUNK_LENGTH_HEADER, PATCH_BASE_HEADER, PATCH_CONTENT_TYPE } from '../protocol/chunk-encoding.js';
import type {
  BlockHashesResponse,
  ChunkBatchResponse,
  CommitPointRequest,
  CommitPointResponse,
  HeartbeatRequest,
  HeartbeatResponse,
  MissingChunksResponse,
  PointChunksResponse,
  RegisterRequest,
  RegisterResponse,
  StageChangesRequest,
} from '../protocol/schemas.js';

/** The agent's side of the agent <-> vault exchange (docs/protocol.md): register, then heartbeat. */
export class VaultClient {
  constructor(
    private readonly baseUrl: string,
    private readonly vault: string,
    /** Read at each request: the agent's client certificate changes when it is renewed. */
    private readonly connectionOf: () => HttpConnection | undefined = () => undefined,
  ) {}

  private get connection(): HttpConnection | undefined {
    return this.connectionOf();
  }

  private url(path: string): string {
    return `${this.baseUrl.replace(/\/$/, '')}/api/v1/vaults/${encodeURIComponent(this.vault)}${path}`;
  }

  register(req: RegisterRequest): Promise<RegisterResponse> {
    return requestJson('POST', this.url('/agents/register'), { body: req, connection: this.connection });
  }

  heartbeat(machine: string, req: HeartbeatRequest): Promise<HeartbeatResponse> {
    return requestJson('POST', this.url(`/agents/${encodeURIComponent(machine)}/heartbeat`), { body: req, timeoutMs: 10_000, connection: this.connection });
  }
}

/** How an upload's body is encoded (docs/protocol.md, "Chunk uploads"). */
export interface ChunkBodyEncoding {
  compressed: boolean;
  /** The body is a patch of the chunk at `base` (null: a chunk of zeros), rebuilding `chunkLength` bytes. */
  patch?: { base: string | null; chunkLength: number };
}

/** The replicator's API as the agent uses it (tests wrap it to inject faults: dropped connections, slowness). */
export interface ReplicatorTransport {
  missing(hashes: string[], signal?: AbortSignal): Promise<string[]>;
  putChunk(hash: string, body: Uint8Array, encoding: ChunkBodyEncoding, signal?: AbortSignal): Promise<void>;
  /**
   * Several uploads in one request (protocol/chunk-batch.ts); optional: without it (fault wrappers, or a replicator
   * that predates it) the uploader sends each chunk with `putChunk`.
   */
  putChunks?(batch: FramedBatch, signal?: AbortSignal): Promise<ChunkBatchResponse>;
  commit(req: CommitPointRequest): Promise<CommitPointResponse>;
  /** One part of a long change list, ahead of its commit (optional: without it, every commit goes whole). */
  stageChanges?(part: StageChangesRequest, signal?: AbortSignal): Promise<void>;
  /** A stored point's chunk hashes, and stored chunks' block digests: comparing without local hashes (optional: fault wrappers may omit them). */
  pointChunks?(pointId: string, page?: { disk: string; from: number; limit: number }): Promise<PointChunksResponse>;
  blockHashes?(hashes: string[]): Promise<BlockHashesResponse>;
}

/** The agent's side of the agent -> replicator exchange: which chunks are missing, upload them, commit a point. */
export class ReplicatorClient implements ReplicatorTransport {
  constructor(
    private readonly baseUrl: string,
    private readonly replicationId: string,
    private readonly connection?: HttpConnection,
  ) {}

  private url(path: string): string {
    return `${this.baseUrl.replace(/\/$/, '')}/replications/${this.replicationId}${path}`;
  }

  async missing(hashes: string[], signal?: AbortSignal): Promise<string[]> {
    return (await requestJson<MissingChunksResponse>('POST', this.url('/chunks/missing'), { body: { hashes }, connection: this.connection, ...(signal ? { signal } : {}) })).missing;
  }

  putChunk(hash: string, body: Uint8Array, encoding: ChunkBodyEncoding = { compressed: false }, signal?: AbortSignal): Promise<void> {
    const headers: Record<string, string> = {};
    if (encoding.compressed) headers['content-encoding'] = 'zstd';
    if (encoding.patch) {
      headers['content-type'] = PATCH_CONTENT_TYPE;
      headers[PATCH_BASE_HEADER] = encoding.patch.base ?? 'zero';
      headers[CHUNK_LENGTH_HEADER] = String(encoding.patch.chunkLength);
    } else {
      headers['content-type'] = CHUNK_CONTENT_TYPE;
    }
    return requestJson('PUT', this.url(`/chunks/${hash}`), { bytes: body, headers, timeoutMs: 120_000, connection: this.connection, ...(signal ? { signal } : {}) });
  }

  putChunks(batch: FramedBatch, signal?: AbortSignal): Promise<ChunkBatchResponse> {
    return requestJson('POST', this.url('/chunks/batch'), { bytes: batch.body, headers: { 'content-type': BATCH_CONTENT_TYPE }, timeoutMs: 120_000, connection: this.connection, ...(signal ? { signal } : {}) });
  }

  commit(req: CommitPointRequest): Promise<CommitPointResponse> {
    return requestJson('POST', this.url('/points'), { body: req, timeoutMs: 120_000, connection: this.connection });
  }

  stageChanges(part: StageChangesRequest, signal?: AbortSignal): Promise<void> {
    return requestJson('POST', this.url('/points/staged'), { body: part, timeoutMs: 120_000, connection: this.connection, ...(signal ? { signal } : {}) });
  }

  pointChunks(pointId: string, page?: { disk: string; from: number; limit: number }): Promise<PointChunksResponse> {
    // Sparse: a disk's listing is the size of its data, not of the disk (a replicator before it lists every chunk).
    // Paged by disk when asked (a replicator before paging refuses the parameters: store-base.ts asks again without).
    const paged = page ? `&disk=${encodeURIComponent(page.disk)}&from=${page.from}&limit=${page.limit}` : '';
    return requestJson('GET', this.url(`/points/${pointId}/chunks?listing=sparse${paged}`), { timeoutMs: 120_000, connection: this.connection });
  }

  blockHashes(hashes: string[]): Promise<BlockHashesResponse> {
    return requestJson('POST', this.url('/chunks/block-hashes'), { body: { hashes }, timeoutMs: 60_000, connection: this.connection });
  }
}
