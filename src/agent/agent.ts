import { RefugeError, isRefugeError } from '../core/errors.js';
import type { HttpConnection } from '../core/http-client.js';
import { silentLogger, type Logger } from '../core/log.js';
import { sleep } from '../core/durations.js';
import type { HeartbeatResponse, MachineFacts, ReplicationAssignment, ReplicationProgress } from '../protocol/schemas.js';
import { ReplicatorClient, VaultClient } from './clients.js';
import { reachabilityReport } from './reachability.js';
import type { FreezeHook } from './freeze.js';
import { emptyState, loadState, saveState, type AgentState } from './state.js';
import { scanDisk, shipMissing } from './scanner.js';

export const AGENT_VERSION = '0.1.0';
/** How often the agent probes and reports its reachability of the vault and replicator. */
const REPORT_INTERVAL_MS = 5 * 60_000;

export interface AgentOptions {
  vaultUrl: string;
  vault: string;
  site: string;
  machine: MachineFacts;
  /** Disk name -> path of the image or block device the agent reads. */
  diskPaths: Record<string, string>;
  stateDir: string;
  freeze?: FreezeHook;
  heartbeatSeconds?: number;
  /** Token and TLS trust for the vault and the replicator. */
  connection?: HttpConnection;
  log?: Logger;
}

/**
 * The agent: registers its machine with the vault, heartbeats, and while the vault assigns it a replication,
 * cuts a recovery point every policy interval by scanning its disks and shipping the changed chunks to the
 * replicator (scan mode; cdp over NBD comes with issue 4). Every failure is retried on the next tick; the agent
 * never gives up on its own.
 */
export class Agent {
  private state: AgentState = emptyState();
  private assignment: ReplicationAssignment | null = null;
  private progress: ReplicationProgress = { phase: 'idle', doneBytes: 0, totalBytes: 0, pendingBytes: 0 };
  private lastError: string | undefined;
  private readonly vaultClient: VaultClient;
  private readonly log: Logger;

  constructor(private readonly o: AgentOptions) {
    this.vaultClient = new VaultClient(o.vaultUrl, o.vault, o.connection);
    this.log = o.log ?? silentLogger;
  }

  async run(signal: AbortSignal): Promise<void> {
    this.state = await loadState(this.o.stateDir);
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
      await sleep(500, signal).catch(() => undefined);
    }
    await heartbeats;
  }

  private async registerUntilDone(signal: AbortSignal): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.vaultClient.register({ site: this.o.site, agentVersion: AGENT_VERSION, machine: this.o.machine });
        this.log.info({ machine: r.machine, vault: r.vault }, 'registered');
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
      const r: HeartbeatResponse = await this.vaultClient.heartbeat(this.o.machine.name, {
        agentVersion: AGENT_VERSION,
        progress: this.progress,
        sentAt: new Date().toISOString(),
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
    return Date.now() - last >= a.crashIntervalSeconds * 1000;
  }

  /** One crash-consistent point: freeze, scan every disk shipping changed chunks, thaw, commit. */
  async takePoint(signal: AbortSignal): Promise<void> {
    const a = this.assignment;
    if (!a) return;
    if (this.state.replicationId !== a.replicationId || this.state.chunkSize !== a.chunkSize) {
      // A new replication, or a store with another chunk size: start from the vault's view of the latest point.
      this.state = { ...emptyState(), replicationId: a.replicationId, lastPointId: a.latestPointId, chunkSize: a.chunkSize };
    } else if (this.state.lastPointId !== a.latestPointId && a.latestPointId !== null) {
      // The vault has a newer point than we remember (state lost or restored from backup): compare everything.
      this.state = { ...this.state, lastPointId: a.latestPointId, disks: {} };
    }
    const replicator = new ReplicatorClient(a.replicatorUrl, a.replicationId, this.o.connection);
    const seeding = this.state.lastPointId === null;
    const totalBytes = this.o.machine.disks.reduce((n, d) => n + d.sizeBytes, 0);
    this.progress = { phase: seeding ? 'seeding' : 'scanning', doneBytes: 0, totalBytes, pendingBytes: 0 };
    const capturedAt = new Date();
    const disks: { name: string; sizeBytes: number; changes: [number, string | null][] }[] = [];
    const hashes: Record<string, (string | null)[]> = {};
    let shipped = 0;
    await this.o.freeze?.freeze();
    try {
      let before = 0;
      for (const disk of this.o.machine.disks) {
        const path = this.o.diskPaths[disk.name];
        if (!path) throw new RefugeError('failed_precondition', `no path configured for disk '${disk.name}'`);
        const scan = await scanDisk({
          path,
          chunkSize: a.chunkSize,
          previous: this.state.lastPointId === null ? [] : (this.state.disks[disk.name] ?? null),
          ship: async (batch) => {
            shipped += await shipMissing(batch, replicator);
          },
          onProgress: (done) => (this.progress.doneBytes = before + done),
          signal,
        });
        before += scan.sizeBytes;
        hashes[disk.name] = scan.hashes;
        disks.push({ name: disk.name, sizeBytes: scan.sizeBytes, changes: scan.changes });
      }
    } finally {
      await this.o.freeze?.thaw();
    }
    const commit = async (parentId: string | null) =>
      replicator.commit({ parentId, capturedAt: capturedAt.toISOString(), consistency: 'crash', disks });
    let result;
    try {
      result = await commit(this.state.lastPointId);
    } catch (err) {
      if (!isRefugeError(err, 'conflict')) throw err;
      // Our parent is not the latest point: drop what we remember so the next scan lists every chunk.
      this.state = { ...this.state, lastPointId: (err.details.latestPointId as string | null) ?? null, disks: {} };
      await saveState(this.o.stateDir, this.state);
      throw err;
    }
    this.state = { ...this.state, lastPointId: result.pointId, lastPointAt: capturedAt.toISOString(), disks: hashes };
    await saveState(this.o.stateDir, this.state);
    this.progress = { phase: 'idle', doneBytes: totalBytes, totalBytes, pendingBytes: 0 };
    this.lastError = undefined;
    this.log.info({ point: result.pointId, changedBytes: result.changedBytes, shippedBytes: shipped }, 'recovery point committed');
    void this.heartbeat();
  }
}
