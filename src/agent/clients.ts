import { requestJson, type HttpConnection } from '../core/http-client.js';
import type {
  CommitPointRequest,
  CommitPointResponse,
  HeartbeatRequest,
  HeartbeatResponse,
  MissingChunksResponse,
  RegisterRequest,
  RegisterResponse,
} from '../protocol/schemas.js';

/** The agent's side of the agent <-> vault exchange (docs/protocol.md): register, then heartbeat. */
export class VaultClient {
  constructor(
    private readonly baseUrl: string,
    private readonly vault: string,
    private readonly connection?: HttpConnection,
  ) {}

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

/** The agent's side of the agent -> replicator exchange: which chunks are missing, upload them, commit a point. */
export class ReplicatorClient {
  constructor(
    private readonly baseUrl: string,
    private readonly replicationId: string,
    private readonly connection?: HttpConnection,
  ) {}

  private url(path: string): string {
    return `${this.baseUrl.replace(/\/$/, '')}/replications/${this.replicationId}${path}`;
  }

  async missing(hashes: string[]): Promise<string[]> {
    return (await requestJson<MissingChunksResponse>('POST', this.url('/chunks/missing'), { body: { hashes }, connection: this.connection })).missing;
  }

  putChunk(hash: string, data: Uint8Array): Promise<void> {
    return requestJson('PUT', this.url(`/chunks/${hash}`), { bytes: data, timeoutMs: 120_000, connection: this.connection });
  }

  commit(req: CommitPointRequest): Promise<CommitPointResponse> {
    return requestJson('POST', this.url('/points'), { body: req, timeoutMs: 120_000, connection: this.connection });
  }
}
