import { isRefugeError } from '../core/errors.js';
import type { HttpConnection } from '../core/http-client.js';
import { silentLogger, type Logger } from '../core/log.js';
import { sleep } from '../core/durations.js';
import type { HeartbeatResponse, MachineFacts, ReplicationAssignment, ReplicationProgress } from '../protocol/schemas.js';
import type { CaptureMode } from './capture/capture-mode.js';
import { ReplicatorClient, VaultClient, type ReplicatorTransport } from './clients.js';
import { reachabilityReport } from './reachability.js';
import { ChunkUploader, emptyUploadStats, type UploadStats } from './shipping/chunk-uploader.js';
import { RateLimiter } from './shipping/rate-limiter.js';
import { retrying, type RetryPolicy } from './shipping/retry.js';
import { shipCut } from './shipping/ship-cut.js';
import { blockRunsFinder, storeBase } from './shipping/store-base.js';
import { emptyState, loadState, saveState, type AgentState } from './state.js';

export const AGENT_VERSION = '0.2.0';
/** How often the agent probes and reports its reachability of the vault and replicator. */
const REPORT_INTERVAL_MS = 5 * 60_000;

export interface AgentOptions {
  vaultUrl: string;
  vault: string;
  site: string;
  machine: MachineFacts;
  /** How the disks are captured: cdp (served over NBD) or scan. The agent starts and stops it. */
  capture: CaptureMode;
  stateDir: string;
  heartbeatSeconds?: number;
  /** Token and TLS trust for the vault and the replicator. */
  connection?: HttpConnection;
  /** Upper bound on bytes per second put on the wire to the replicator (0 or absent: unlimited). */
  bandwidthBytesPerSecond?: number;
  /** zstd-compress uploads when it helps (default true). */
  compress?: boolean;
  /** Upload batching, parallelism and retries (defaults suit production; tests shrink them). */
  shipping?: { batchBytes?: number; concurrency?: number; retry?: RetryPolicy };
  /** Wraps the HTTP transport to the replicator (tests insert faults here). */
  transportFor?: (client: ReplicatorClient) => ReplicatorTransport;
  log?: Logger;
}

/** What the agent has shipped since it started, for operators and tests (`refuge agent` logs it per point). */
export interface AgentCounters {
  pointsCommitted: number;
  cutsAbandoned: number;
  readBytes: number;
  upload: UploadStats;
}

/**
 * The agent: registers its machine with the vault, heartbeats, and while the vault assigns it a replication, cuts
 * a recovery point every policy interval through its capture mode and ships the changed chunks to the replicator.
 * Every failure is retried on the next tick: a failed cut is abandoned (its chunks are listed again next time) and
 * what the replicator already stored is never sent again. The agent never gives up on its own.
 */
export class Agent {
  private state: AgentState = emptyState();
  private assignment: ReplicationAssignment | null = null;
  private progress: ReplicationProgress = { phase: 'idle', doneBytes: 0, totalBytes: 0, pendingBytes: 0 };
  private uploader: ChunkUploader | undefined;
  private lastError: string | undefined;
  private readonly vaultClient: VaultClient;
  private readonly limiter: RateLimiter;
  private readonly log: Logger;
  readonly counters: AgentCounters = { pointsCommitted: 0, cutsAbandoned: 0, readBytes: 0, upload: emptyUploadStats() };

  constructor(private readonly o: AgentOptions) {
    this.vaultClient = new VaultClient(o.vaultUrl, o.vault, o.connection);
    this.limiter = new RateLimiter(o.bandwidthBytesPerSecond ?? 0);
    this.log = o.log ?? silentLogger;
  }

  async run(signal: AbortSignal): Promise<void> {
    this.state = await loadState(this.o.stateDir);
    await this.o.capture.start();
    try {
      await this.registerUntilDone(signal);
      const heartbeatMs = (this.o.heartbeatSeconds ?? 10) * 1000;
      const heartbeats = (async () => {
        while (!signal.aborted) {
          await this.heartbeat();
          await sleep(heartbeatMs, signal).catch(() => undefined);
        }
      })();
      while (!signal.aborted) {
        try {
          if (this.pointDue()) await this.takePoint(signal);
        } catch (err) {
          if (signal.aborted) break;
          this.lastError = (err as Error).message;
          this.log.warn({ err }, 'recovery point failed; retrying');
          await sleep(2000, signal).catch(() => undefined);
        }
        await sleep(200, signal).catch(() => undefined);
      }
      await heartbeats;
    } finally {
      await this.o.capture.stop();
    }
  }

  private async registerUntilDone(signal: AbortSignal): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.vaultClient.register({ site: this.o.site, agentVersion: AGENT_VERSION, machine: this.o.machine });
        this.log.info({ machine: r.machine, vault: r.vault, capture: this.o.capture.kind }, 'registered');
        return;
      } catch (err) {
        if (isRefugeError(err) && !err.retryable) throw err; // bad input or refused: retrying will not help
        this.log.warn({ err }, 'registration failed; retrying');
        await sleep(Math.min(30_000, 1000 * 2 ** attempt), signal);
      }
    }
  }

  private lastReport: { at: number; replicatorUrl: string | undefined } = { at: 0, replicatorUrl: undefined };

  private async heartbeat(): Promise<void> {
    try {
      // How the vault and the replicator look from here (the networking and certificate readiness checks): every
      // few minutes, and as soon as the vault names a (new) replicator.
      const replicatorUrl = this.assignment?.replicatorUrl;
      const due = Date.now() - this.lastReport.at > REPORT_INTERVAL_MS || replicatorUrl !== this.lastReport.replicatorUrl;
      const trust = this.o.connection?.ca ? { ca: this.o.connection.ca } : {};
      const report = due ? await reachabilityReport({ vault: this.o.vaultUrl, ...(replicatorUrl ? { replicator: replicatorUrl } : {}) }, trust) : undefined;
      if (report) this.lastReport = { at: Date.now(), replicatorUrl };
      const pendingBytes = this.o.capture.pendingBytes() + (this.uploader?.pendingBytes ?? 0);
      const r: HeartbeatResponse = await this.vaultClient.heartbeat(this.o.machine.name, {
        agentVersion: AGENT_VERSION,
        progress: { ...this.progress, pendingBytes },
        sentAt: new Date().toISOString(),
        site: this.o.site,
        ...(report ? { report } : {}),
        ...(this.lastError ? { lastError: this.lastError } : {}),
      });
      this.assignment = r.replication;
    } catch (err) {
      this.log.warn({ err }, 'heartbeat failed');
    }
  }

  private pointDue(): boolean {
    const a = this.assignment;
    if (!a || a.mode !== 'replicate') return false;
    if (this.state.replicationId !== a.replicationId || this.state.lastPointId === null) return true;
    const last = this.state.lastPointAt ? Date.parse(this.state.lastPointAt) : 0;
    // The vault wants a point now (a planned failover's final point) or a resync: cut without waiting.
    if ((a.cutAfter && last < Date.parse(a.cutAfter)) || (a.resyncAfter && last < Date.parse(a.resyncAfter))) return true;
    return Date.now() - last >= a.crashIntervalSeconds * 1000;
  }

  /** One crash-consistent point: cut, ship the chunks that differ from the last point, commit, finish the cut. */
  async takePoint(signal: AbortSignal): Promise<void> {
    const a = this.assignment;
    if (!a) return;
    if (this.state.replicationId !== a.replicationId || this.state.chunkSize !== a.chunkSize) {
      // A new replication, or a store with another chunk size: start from the vault's view of the latest point.
      this.state = { ...emptyState(), replicationId: a.replicationId, lastPointId: a.latestPointId, chunkSize: a.chunkSize };
    } else if (this.state.lastPointId !== a.latestPointId && a.latestPointId !== null) {
      // The vault has another latest point than we remember (state lost or restored from backup): compare everything.
      this.state = { ...this.state, lastPointId: a.latestPointId, disks: {} };
    } else if (a.resyncAfter && (this.state.lastPointAt === null || Date.parse(this.state.lastPointAt) < Date.parse(a.resyncAfter))) {
      // Asked to resync: trust nothing remembered, compare every chunk with the store's latest point.
      this.state = { ...this.state, disks: {} };
    }
    const client = new ReplicatorClient(a.replicatorUrl, a.replicationId, this.o.connection);
    const transport = this.o.transportFor?.(client) ?? client;
    let base = this.state.lastPointId === null ? {} : this.state.disks;
    const everyChunk = this.o.machine.disks.some((d) => base[d.name] === undefined);
    // Without remembered hashes but with a parent point (resync, or the seed of a re-protect), compare against the
    // store's own hashes, and patch changed chunks block by block: only the differences travel.
    const fromStore = everyChunk && this.state.lastPointId !== null && transport.pointChunks !== undefined && transport.blockHashes !== undefined;
    if (fromStore) base = await storeBase(transport, this.state.lastPointId as string, a.chunkSize);
    const totalBytes = this.o.machine.disks.reduce((n, d) => n + d.sizeBytes, 0);
    this.progress = { phase: this.state.lastPointId === null ? 'seeding' : 'shipping', doneBytes: 0, totalBytes, pendingBytes: 0 };
    const uploader = new ChunkUploader(transport, {
      ...this.o.shipping,
      limiter: this.limiter,
      compress: this.o.compress !== false,
      signal,
    });
    this.uploader = uploader;
    const cut = await this.o.capture.cut({ chunkSize: a.chunkSize, everyChunk });
    let shipped;
    let result;
    try {
      const runsAgainstBase = fromStore ? blockRunsFinder(transport) : undefined;
      shipped = await shipCut(cut, { chunkSize: a.chunkSize, base, uploader, signal, ...(runsAgainstBase ? { runsAgainstBase } : {}), onRead: (n) => (this.progress.doneBytes += n) });
      const request = { parentId: this.state.lastPointId, capturedAt: cut.capturedAt.toISOString(), consistency: 'crash' as const, disks: shipped.disks };
      // A retried commit whose first answer was lost is recognized by the replicator and answered with its point.
      result = await retrying(() => transport.commit(request), { ...this.o.shipping?.retry, signal });
    } catch (err) {
      this.counters.cutsAbandoned++;
      await cut.abandon();
      if (isRefugeError(err, 'conflict')) {
        // Our parent is not the latest point: forget our hashes so the next cut compares every chunk against it.
        this.state = { ...this.state, lastPointId: (err.details.latestPointId as string | null) ?? null, disks: {} };
        await saveState(this.o.stateDir, this.state);
      }
      throw err;
    } finally {
      this.addStats(uploader.stats);
      this.uploader = undefined;
    }
    this.state = { ...this.state, lastPointId: result.pointId, lastPointAt: cut.capturedAt.toISOString(), disks: shipped.hashes };
    await saveState(this.o.stateDir, this.state);
    await cut.complete();
    this.counters.pointsCommitted++;
    this.counters.readBytes += shipped.readBytes;
    this.progress = { phase: 'idle', doneBytes: totalBytes, totalBytes, pendingBytes: 0 };
    this.lastError = undefined;
    this.log.info(
      { point: result.pointId, changedBytes: result.changedBytes, readBytes: shipped.readBytes, wireBytes: uploader.stats.wireBytes, patches: uploader.stats.patches },
      'recovery point committed',
    );
    void this.heartbeat();
  }

  private addStats(s: UploadStats): void {
    const t = this.counters.upload;
    for (const k of Object.keys(t) as (keyof UploadStats)[]) t[k] += s[k];
  }
}
