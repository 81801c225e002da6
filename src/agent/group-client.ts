import { requestJson, type HttpConnection } from '../core/http-client.js';
import type { AgentEventRequest, BarrierResponse, CutResultRequest, CutResultResponse, GroupCutInstruction, GroupCutPoll } from '../protocol/group-cut.js';

/** The agent's side of consistency-group cuts and agent events (../protocol/group-cut.ts, docs/protocol.md). */
export class GroupCutClient {
  constructor(
    private readonly baseUrl: string,
    private readonly vault: string,
    private readonly machine: string,
    /** Read at each request: the agent's client certificate changes when it is renewed. */
    private readonly connectionOf: () => HttpConnection | undefined = () => undefined,
  ) {}

  private url(path: string): string {
    return `${this.baseUrl.replace(/\/$/, '')}/api/v1/vaults/${encodeURIComponent(this.vault)}/agents/${encodeURIComponent(this.machine)}${path}`;
  }

  async poll(): Promise<GroupCutInstruction | null> {
    return (await requestJson<GroupCutPoll>('GET', this.url('/group-cut'), { timeoutMs: 10_000, connection: this.connectionOf() })).cut;
  }

  /** Waits at the barrier until every member reached `phase` or the cut failed (asks again while told to retry). */
  async barrier(cutId: string, phase: 'prepared' | 'paused', signal: AbortSignal): Promise<BarrierResponse> {
    for (;;) {
      const r = await requestJson<BarrierResponse>('POST', this.url(`/group-cuts/${cutId}/barrier`), { body: { phase }, timeoutMs: 30_000, connection: this.connectionOf(), signal });
      if (r.proceed || !r.reason?.startsWith('retry')) return r;
    }
  }

  result(cutId: string, result: CutResultRequest): Promise<CutResultResponse> {
    return requestJson('POST', this.url(`/group-cuts/${cutId}/result`), { body: result, timeoutMs: 30_000, connection: this.connectionOf() });
  }

  event(e: AgentEventRequest): Promise<void> {
    return requestJson('POST', this.url('/events'), { body: e, timeoutMs: 10_000, connection: this.connectionOf() });
  }
}
