import { requestJson, type HttpConnection } from '../core/http-client.js';
import type {
  RecordPointRequest,
  ReplicationTargetInfo,
  ReplicatorReport,
  ReplicatorReportResponse,
} from '../protocol/replicator-vault.js';

/** A standalone replicator's side of the exchange with the vault (docs/protocol.md): report, ask, record. */
export class VaultLink {
  constructor(
    private readonly baseUrl: string,
    private readonly vault: string,
    private readonly site: string,
    /** The replicator's client certificate (from its registration; replaced when renewed) and the vault CA to trust. */
    public connection?: HttpConnection,
  ) {}

  private url(path: string): string {
    return `${this.baseUrl.replace(/\/$/, '')}/api/v1/vaults/${encodeURIComponent(this.vault)}/replicators/${encodeURIComponent(this.site)}${path}`;
  }

  report(body: ReplicatorReport): Promise<ReplicatorReportResponse> {
    return requestJson('PUT', this.url(''), { body, timeoutMs: 10_000, connection: this.connection });
  }

  /** Whether the replication sends data to this site now, and (given its certificate's fingerprint) whether this agent may. */
  target(replicationId: string, agentFingerprint256?: string): Promise<ReplicationTargetInfo> {
    const query = agentFingerprint256 ? `?agent=${encodeURIComponent(agentFingerprint256)}` : '';
    return requestJson('GET', this.url(`/replications/${encodeURIComponent(replicationId)}${query}`), { timeoutMs: 10_000, connection: this.connection });
  }

  async recordPoint(point: RecordPointRequest): Promise<void> {
    await requestJson('POST', this.url('/points'), { body: point, timeoutMs: 30_000, connection: this.connection });
  }
}
