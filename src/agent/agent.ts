import { RefugeError, isRefugeError } from '../core/errors.js';
import { isBlobNaming, type BlobNaming } from '../store/chunks.js';
import type { HttpConnection } from '../core/http-client.js';
import { silentLogger, type Logger } from '../core/log.js';
import { sleep } from '../core/durations.js';
import type { CommitPointRequest, HeartbeatResponse, MachineFacts, ReplicationAssignment, ReplicationProgress } from '../protocol/schemas.js';
import type { CaptureMode, Cut } from './capture/capture-mode.js';
import type { GroupCutInstruction } from '../protocol/group-cut.js';
import { GroupCutClient } from './group-client.js';
import { cutAtGroupBarrier } from './group-cut.js';
import type { AppHook } from './hooks/app-hooks.js';
import { quiesce, type Quiesced } from './hooks/hook-runner.js';
import { ReplicatorClient, VaultClient, type ReplicatorTransport } from './clients.js';
import { reachabilityReport } from './reachability.js';
import { BasesMissingError, ChunkUploader, emptyUploadStats, type UploadStats } from './shipping/chunk-uploader.js';
import { RateLimiter } from './shipping/rate-limiter.js';
import { retrying, type RetryPolicy } from './shipping/retry.js';
import { shipCut } from './shipping/ship-cut.js';
import { stageLongCommit } from './shipping/staged-commit.js';
import { blockRunsFinder, storeBase } from './shipping/store-base.js';
import { emptyState, loadState, saveState, type AgentState } from './state.js';
import { clearSentCommit, hashesAfter, loadSentCommit, refusedForGood, saveSentCommit, type SentCommit } from './sent-commit.js';
import { narrowedCut, prehashCovers, prehashCut, type Prehash } from './prehash.js';
import { LeafDigestFile } from './leaf-digests.js';
import type { RegistrationCredentials } from '../protocol/enrollment.js';
import { loadIdentity, register, renew, renewalDue, type Identity } from '../protocol/identity.js';
import { hostFacts } from './host-facts.js';

/** 0.3.0: names chunks as the target store does (`naming` of the assignment; store format 3). */
export const AGENT_VERSION = '0.3.0';
/** Chunks shipped from their written leaves: one in this many is read whole each point, rotating (see `sampled`). */
const LEAF_SAMPLE = 64;

/**
 * The naming a store asks for (absent: sha256, a vault before store format 3), or an error an operator can act on:
 * a later vault's store may name chunks in a way this agent cannot, and guessing would only fail every upload.
 */
function knownNaming(naming: string | undefined): BlobNaming {
  const n = naming ?? 'sha256';
  if (isBlobNaming(n)) return n;
  throw new RefugeError('failed_precondition', `the target store names chunks by '${n}', which this agent (${AGENT_VERSION}) does not know`, { hint: 'upgrade the agent to the vault\'s version' });
}
/** How often the agent probes and reports its reachability of the vault and replicator. */
const REPORT_INTERVAL_MS = 5 * 60_000;
/**
 * After this many heartbeats in a row failed, the next one that gets through means the network came back: uploads
 * still in flight then are restarted (see `heartbeat`).
 */
export const LINK_DOWN_HEARTBEATS = 2;

/** A point's phases in whole milliseconds, for its log line: where a slow point spent its time (cut, ship, commit, save). */
const roundedMs = (phases: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round(v)]));

export interface AgentOptions {
  vaultUrl: string;
  vault: string;
  site: string;
  machine: MachineFacts;
  /** How the disks are captured: cdp (served over NBD) or scan. The agent starts and stops it. */
  capture: CaptureMode;
  stateDir: string;
  heartbeatSeconds?: number;
  /**
   * TLS trust and client certificate for the vault and the replicator. Normally absent: the agent uses the identity
   * (client certificate) saved in `stateDir` by registration.
   */
  connection?: HttpConnection;
  /** The registration file to redeem when `stateDir` holds no identity yet (`refuge agent register` does it too). */
  registration?: () => Promise<RegistrationCredentials>;
  /** Upper bound on bytes per second put on the wire to the replicator (0 or absent: unlimited). */
  bandwidthBytesPerSecond?: number;
  /** zstd-compress uploads when it helps (default true). */
  compress?: boolean;
  /** Upload batching, parallelism and retries (defaults suit production; tests shrink them). */
  shipping?: { batchBytes?: number; concurrency?: number; retry?: RetryPolicy };
  /** When a commit's change list goes ahead in parts, and how long a part is (protocol/limits.ts; tests shrink them). */
  staging?: { above?: number; partEntries?: number };
  /** App-consistency hooks run around a cut when the policy's app-consistent interval is due (hooks/). */
  hooks?: AppHook[];
  /** Longest each hook phase may take before the point falls back to crash-consistent (default 30 s). */
  hookTimeoutSeconds?: number;
  /**
   * Into a store of leaf-digest names, one in this many chunks a cdp point ships from their written leaves is read
   * whole instead, rotating (ship-by-leaves.ts `sampled`; default 64; 0: never, 1: always).
   */
  leafSampleEvery?: number;
  /** Wraps the HTTP transport to the replicator (tests insert faults here). */
  transportFor?: (client: ReplicatorClient) => ReplicatorTransport;
  /** Called once a commit is answered, before the agent records it (the crash test kills it here: crash-after-commit.ts). */
  onCommitAnswered?: (answer: { pointId: string; changed: boolean; readBytes: number }) => void;
  log?: Logger;
}

/** What the agent has shipped since it started, for operators and tests (`refuge agent` logs it per point). */
export interface AgentCounters {
  pointsCommitted: number;
  appConsistentPoints: number;
  groupCutsJoined: number;
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
  /** A commit sent whose answer has not come (sent-commit.ts): sent again before anything new is cut. */
  private sent: SentCommit | undefined;
  private assignment: ReplicationAssignment | null = null;
  private progress: ReplicationProgress = { phase: 'idle', doneBytes: 0, totalBytes: 0, pendingBytes: 0 };
  private uploader: ChunkUploader | undefined;
  /**
   * Bases the replicator lacked for a cut's patches (BasesMissingError): chunks on them go whole from then on. Kept
   * while the agent runs (a lost base may still be the hash of other chunks of the disk, and a failed cut is dearer
   * than a chunk sent whole), and small: a base is lost only to a repair or a stale view.
   */
  private readonly wholeOn = new Set<string>();
  private lastError: string | undefined;
  private readonly vaultClient: VaultClient;
  private readonly groupClient: GroupCutClient;
  private lastGroupPoll = 0;
  /** When the last app-consistent point of this run was cut (an agent restart makes the next point app-consistent). */
  private lastAppPointAt = 0;
  private readonly limiter: RateLimiter;
  private readonly log: Logger;
  private identity: Identity | undefined;
  private failedHeartbeats = 0;
  /** Aborts the shipping of the point being taken (not the agent): set while a point ships. */
  private shipping: AbortController | undefined;
  /** Whether the last point this process cut was committed: nothing of the next cut's changes was sent before. */
  private lastCutCommitted = false;
  /** A re-protect's pre-hash of the disks (prehash.ts), for the next point only (the first against the seed). */
  private prehash: Prehash | undefined;
  private leafFiles: Promise<Record<string, LeafDigestFile>> | undefined;
  /** Wakes the point loop from its pause when a heartbeat changes the instruction (stop -> replicate). */
  private wakeLoop: (() => void) | undefined;
  readonly counters: AgentCounters = { pointsCommitted: 0, appConsistentPoints: 0, groupCutsJoined: 0, cutsAbandoned: 0, readBytes: 0, upload: emptyUploadStats() };

  constructor(private readonly o: AgentOptions) {
    this.vaultClient = new VaultClient(o.vaultUrl, o.vault, () => this.connection);
    this.groupClient = new GroupCutClient(o.vaultUrl, o.vault, o.machine.name, () => this.connection);
    this.limiter = new RateLimiter(o.bandwidthBytesPerSecond ?? 0);
    this.log = o.log ?? silentLogger;
  }

  /** The client certificate of the agent's identity (renewed in place), or the connection it was given. */
  private get connection(): HttpConnection | undefined {
    return this.identity?.connection ?? this.o.connection;
  }

  /** Loads the identity from the state folder, registering first when there is none and a registration file is given. */
  private async ensureIdentity(): Promise<void> {
    if (this.o.connection) return;
    this.identity = await loadIdentity(this.o.stateDir);
    if (this.identity) return;
    if (!this.o.registration) {
      throw new RefugeError('failed_precondition', `the agent is not registered: ${this.o.stateDir} holds no client certificate`, {
        hint: 'register it first: `refuge --credentials FILE agent register --site SITE --name MACHINE --state-dir DIR` with a file from `refuge agent key create --write FILE`',
      });
    }
    this.identity = await register(await this.o.registration(), { kind: 'machine', site: this.o.site, machine: this.o.machine.name }, this.o.stateDir);
    this.log.info({ machine: this.o.machine.name, notAfter: this.identity.notAfter }, 'agent registered; client certificate saved');
  }

  /** Renews the client certificate after two thirds of its lifetime (a failure is retried at the next heartbeat). */
  private async renewIfDue(): Promise<void> {
    if (!this.identity || !renewalDue(this.identity)) return;
    try {
      this.identity = await renew(this.identity, this.o.stateDir);
      this.log.info({ notAfter: this.identity.notAfter }, 'client certificate renewed');
    } catch (err) {
      this.log.warn({ err, notAfter: this.identity.notAfter }, 'renewing the client certificate failed; retrying');
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    await this.ensureIdentity();
    this.state = await loadState(this.o.stateDir);
    this.sent = await loadSentCommit(this.o.stateDir);
    await this.o.capture.start();
    try {
      await this.registerUntilDone(signal);
      const heartbeatMs = (this.o.heartbeatSeconds ?? 10) * 1000;
      const heartbeats = (async () => {
        while (!signal.aborted) {
          await this.heartbeat();
          // The vault may ask for the next heartbeat sooner (a re-protect about to let this agent ship).
          const soonMs = (this.assignment?.heartbeatSoonSeconds ?? Infinity) * 1000;
          await sleep(Math.min(heartbeatMs, soonMs), signal).catch(() => undefined);
        }
      })();
      while (!signal.aborted) {
        try {
          const groupCut = await this.groupCutDue();
          if (groupCut) await this.takePoint(signal, groupCut);
          else if (this.pointDue()) await this.takePoint(signal);
          else if (this.prehashDue()) await this.takePrehash(signal);
        } catch (err) {
          if (signal.aborted) break;
          this.lastError = (err as Error).message;
          this.log.warn({ err }, 'recovery point failed; retrying');
          await sleep(2000, signal).catch(() => undefined);
        }
        // A re-protect's new source learns it may ship at a heartbeat: it starts at once, not after this pause.
        await Promise.race([sleep(200, signal).catch(() => undefined), new Promise<void>((wake) => (this.wakeLoop = wake))]);
        this.wakeLoop = undefined;
      }
      await heartbeats;
    } finally {
      await this.o.capture.stop();
      const files = this.leafFiles;
      this.leafFiles = undefined;
      for (const f of Object.values((await files?.catch(() => undefined)) ?? {})) await f.close().catch(() => undefined);
    }
  }

  /**
   * The leaf-digest files of the disks (leaf-digests.ts), opened on first use: only a cdp capture shipping to a store
   * of leaf-digest names uses them (a scan reads every chunk whole anyway).
   */
  private leafDigestFiles(naming: BlobNaming): Promise<Record<string, LeafDigestFile>> | undefined {
    if (naming !== 'leaf16' || this.o.capture.kind !== 'cdp') return undefined;
    this.leafFiles ??= (async () => {
      const files: Record<string, LeafDigestFile> = {};
      try {
        for (const d of this.o.machine.disks) files[d.name] = await LeafDigestFile.open(this.o.stateDir, d.name);
      } catch (err) {
        for (const f of Object.values(files)) await f.close().catch(() => undefined);
        this.leafFiles = undefined; // tried again at the next point
        throw err;
      }
      return files;
    })();
    return this.leafFiles;
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
      await this.renewIfDue();
      const trust = this.connection?.ca ? { ca: this.connection.ca } : {};
      const report = due ? await reachabilityReport({ vault: this.o.vaultUrl, ...(replicatorUrl ? { replicator: replicatorUrl } : {}) }, trust) : undefined;
      if (report) this.lastReport = { at: Date.now(), replicatorUrl };
      const pendingBytes = this.o.capture.pendingBytes() + (this.uploader?.pendingBytes ?? 0);
      const r: HeartbeatResponse = await this.vaultClient.heartbeat(this.o.machine.name, {
        agentVersion: AGENT_VERSION,
        host: hostFacts(AGENT_VERSION, this.o.machine.disks),
        progress: { ...this.progress, pendingBytes },
        sentAt: new Date().toISOString(),
        site: this.o.site,
        ...(report ? { report } : {}),
        ...(this.lastError ? { lastError: this.lastError } : {}),
      });
      const modeChanged = r.replication?.mode !== this.assignment?.mode;
      this.assignment = r.replication;
      if (modeChanged) this.wakeLoop?.();
      if (this.failedHeartbeats >= LINK_DOWN_HEARTBEATS && this.shipping) {
        // The network was down and is back. Uploads sent before or during the outage sit on connections whose
        // unacknowledged bytes TCP retransmits with exponential backoff (tens of seconds to minutes), so they would
        // resume long after the link did. Restarting the cut now ships on fresh connections; what the replicator
        // already stored is not sent again.
        this.log.info({ failedHeartbeats: this.failedHeartbeats }, 'the vault answers again: restarting the upload in flight on fresh connections');
        this.shipping.abort(new RefugeError('unavailable', 'the network came back; the upload restarts on fresh connections', { retryable: true }));
      }
      this.failedHeartbeats = 0;
    } catch (err) {
      this.failedHeartbeats++;
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
    return Date.now() - last >= a.crashIntervalSeconds * 1000 || this.appDue();
  }

  /**
   * Told `stop` while a re-protect seeds the store it is about to ship to: hash the disks now (prehash.ts). A
   * pre-hash left from a re-protect that is over (told `stop` without it) is dropped: it would only grow stale.
   */
  private prehashDue(): boolean {
    const a = this.assignment;
    if (a?.mode !== 'stop') return false;
    if (!a.reprotectPending) {
      this.prehash = undefined;
      return false;
    }
    const p = this.prehash;
    return p?.replicationId !== a.replicationId || p.chunkSize !== a.reprotectPending.chunkSize || p.naming !== knownNaming(a.reprotectPending.naming);
  }

  private async takePrehash(signal: AbortSignal): Promise<void> {
    const a = this.assignment;
    if (!a?.reprotectPending) return;
    const { chunkSize } = a.reprotectPending;
    const naming = knownNaming(a.reprotectPending.naming);
    const cut = await this.o.capture.cut({ chunkSize, everyChunk: true });
    try {
      this.prehash = await prehashCut(cut, { replicationId: a.replicationId, chunkSize, naming, signal });
    } catch (err) {
      await cut.abandon();
      throw err;
    }
    // Completed: a capture that tracks writes lists those made from now on at the next cut (prehash.ts). A commit
    // still unanswered can no longer be taken up from its parent's cut (sent-commit.ts): forget it first.
    await this.forgetSent();
    await cut.complete();
    this.counters.readBytes += this.prehash.readBytes;
    this.log.info({ readBytes: this.prehash.readBytes }, 're-protect pending: disks hashed ahead of the seed');
  }

  /** An app-consistent point is due: hooks are configured and the policy's app interval has passed. */
  private appDue(): boolean {
    const interval = this.assignment?.appIntervalSeconds;
    if (!interval || !this.o.hooks?.length || this.state.lastPointId === null) return false;
    return Date.now() - this.lastAppPointAt >= interval * 1000;
  }

  /** A cut of our consistency group we still have to take part in (polled about once a second while in a group). */
  private async groupCutDue(): Promise<GroupCutInstruction | null> {
    const a = this.assignment;
    if (!a?.group || a.mode !== 'replicate' || this.state.lastPointId === null || Date.now() - this.lastGroupPoll < 1000) return null;
    this.lastGroupPoll = Date.now();
    return this.groupClient.poll().catch((err: unknown) => {
      this.log.warn({ err }, 'group cut poll failed');
      return null;
    });
  }

  private reportEvent(type: 'app-consistency-failed' | 'group-cut-failed', message: string, details: Record<string, string | null> = {}): void {
    this.log.warn({ type, details }, message);
    this.groupClient.event({ type, message: message.slice(0, 2000), details }).catch((err: unknown) => this.log.warn({ err }, 'event not delivered'));
  }

  /**
   * One recovery point: quiesce through the hooks if an app-consistent point is due, cut (alone, or at a
   * consistency group's barrier), ship the chunks that differ from the last point, commit, finish the cut.
   */
  async takePoint(signal: AbortSignal, groupCut?: GroupCutInstruction): Promise<void> {
    const a = this.assignment;
    if (!a) return;
    const client = new ReplicatorClient(a.replicatorUrl, a.replicationId, this.connection);
    const transport = this.o.transportFor?.(client) ?? client;
    // A resent commit answered now is newer news than the assignment's latest point (from the last heartbeat, which
    // may predate the commit landing): the agent's own state is then the vault's latest.
    const settled = await this.settleSent(a, transport);
    const naming = knownNaming(a.naming);
    if (this.state.replicationId !== a.replicationId || this.state.chunkSize !== a.chunkSize || (this.state.naming ?? 'sha256') !== naming) {
      // A new replication, or a store with another chunk size or naming: start from the vault's view of the latest point.
      this.state = { ...emptyState(), replicationId: a.replicationId, lastPointId: a.latestPointId, chunkSize: a.chunkSize, naming };
    } else if (!settled && this.state.lastPointId !== a.latestPointId && a.latestPointId !== null) {
      // The vault has another latest point than we remember (state lost or restored from backup, or a commit whose
      // answer we never got, e.g. killed while it was under way): compare everything.
      this.log.info({ remembered: this.state.lastPointId, latest: a.latestPointId }, 'the vault knows another latest point than ours: comparing every chunk with it');
      this.state = { ...this.state, lastPointId: a.latestPointId, disks: {} };
    } else if (a.resyncAfter && (this.state.lastPointAt === null || Date.parse(this.state.lastPointAt) < Date.parse(a.resyncAfter))) {
      // Asked to resync: trust nothing remembered, compare every chunk with the store's latest point.
      this.state = { ...this.state, disks: {} };
    }
    let base = this.state.lastPointId === null ? {} : this.state.disks;
    const everyChunk = this.o.machine.disks.some((d) => base[d.name] === undefined);
    // Without remembered hashes but with a parent point (resync, or the seed of a re-protect), compare against the
    // store's own hashes, and patch changed chunks block by block: only the differences travel.
    const fromStore = everyChunk && this.state.lastPointId !== null && transport.pointChunks !== undefined && transport.blockHashes !== undefined;
    if (fromStore) base = await storeBase(transport, this.state.lastPointId as string, a.chunkSize, this.o.machine.disks.map((d) => d.name));
    // A re-protect's first point, with the disks hashed while the seed was made: only what differs is read again.
    const prehash = this.prehash;
    const ahead = fromStore && prehash?.replicationId === a.replicationId && prehash.chunkSize === a.chunkSize && prehash.naming === naming && prehashCovers(prehash, base, this.o.machine.disks) ? prehash : undefined;
    this.prehash = undefined; // used once: a failed point compares every chunk next time
    const totalBytes = this.o.machine.disks.reduce((n, d) => n + d.sizeBytes, 0);
    this.progress = { phase: this.state.lastPointId === null ? 'seeding' : 'shipping', doneBytes: 0, totalBytes, pendingBytes: 0 };
    const shipping = new AbortController();
    this.shipping = shipping;
    const shipSignal = AbortSignal.any([signal, shipping.signal]);
    const uploader = new ChunkUploader(transport, {
      ...this.o.shipping,
      limiter: this.limiter,
      compress: this.o.compress !== false,
      signal: shipSignal,
      // After an abandoned cut (or a restart) the store may hold this cut's changes already: ask about them all.
      // A base read from the store (resync, conflict) may be older than what the store holds: ask then too.
      askAboutPatches: !this.lastCutCommitted || fromStore,
      wholeOn: this.wholeOn,
    });
    this.uploader = uploader;
    const ctx = { machine: this.o.machine.name, disks: this.o.machine.disks.map((d) => d.name), ...(groupCut ? { groupCutId: groupCut.cutId } : {}) };
    // Group cuts are rare and meant to be the group's best point: they are app-consistent whenever hooks exist.
    const appWanted = groupCut ? (this.o.hooks?.length ?? 0) > 0 : this.appDue();
    if (appWanted) this.lastAppPointAt = Date.now(); // a failing hook is retried at the next app interval, not at once
    const quiesced: Quiesced | undefined = appWanted ? await quiesce(this.o.hooks ?? [], ctx, (this.o.hookTimeoutSeconds ?? 30) * 1000) : undefined;
    if (quiesced && !quiesced.appConsistent) {
      this.reportEvent('app-consistency-failed', `app-consistency hooks failed; cutting a crash-consistent point: ${quiesced.failures.join('; ')}`, { groupCutId: groupCut?.cutId ?? null });
    }
    let released = false;
    const release = async () => {
      if (released || !quiesced) return;
      released = true;
      const failures = await quiesced.release();
      if (failures.length > 0) this.reportEvent('app-consistency-failed', `app-consistency hooks failed after the cut: ${failures.join('; ')}`);
    };
    const cutNow = async (): Promise<Cut> => {
      const taken = await this.o.capture.cut({ chunkSize: a.chunkSize, everyChunk: everyChunk && !ahead });
      if (!ahead) return taken;
      const narrowed = narrowedCut(taken, ahead, base);
      if (narrowed) return narrowed;
      await taken.abandon();
      throw new RefugeError('failed_precondition', 'the disks changed size since they were hashed for the re-protect; comparing every chunk next time');
    };
    let cut: Cut | undefined;
    const began = performance.now();
    try {
      if (groupCut) {
        this.counters.groupCutsJoined++;
        if (quiesced && !quiesced.appConsistent) {
          // An app-consistent group point is all-or-nothing: this member's failure fails the group cut.
          // Nothing is cut for it (cut stays undefined).
          await this.groupClient.result(groupCut.cutId, { error: `app-consistency hooks failed: ${quiesced.failures.join('; ')}` });
        } else {
          const onFailure = (why: string) => this.reportEvent('group-cut-failed', `group cut ${groupCut.cutId} of '${groupCut.group}': ${why}`, { cutId: groupCut.cutId, group: groupCut.group });
          cut = await cutAtGroupBarrier({ instruction: groupCut, client: this.groupClient, capture: this.o.capture, cutNow, signal, onFailure, log: this.log });
        }
      } else {
        cut = await cutNow();
      }
    } finally {
      // A cdp cut is one instant (copy-on-write keeps it): the machine may go on at once. A scan reads the disks
      // after the cut, so it stays quiesced until every chunk is read (below).
      if (!cut || this.o.capture.kind === 'cdp') await release();
    }
    if (!cut) {
      this.uploader = undefined;
      this.shipping = undefined;
      this.progress = { ...this.progress, phase: 'idle' };
      return;
    }
    const consistency = quiesced?.appConsistent ? ('app' as const) : ('crash' as const);
    const phases = { cutMs: performance.now() - began, shipMs: 0, commitMs: 0, saveMs: 0 };
    let shipped;
    let result;
    let committed: CommitPointRequest | undefined;
    try {
      this.lastCutCommitted = false; // until this cut commits: whatever it uploads may be in the store
      const runsAgainstBase = fromStore ? blockRunsFinder(transport) : undefined;
      let at = performance.now();
      const leafDigests = await this.leafDigestFiles(naming)?.catch((err: unknown) => {
        this.log.warn({ err }, 'leaf digests unavailable: chunks are read whole');
        return undefined;
      });
      // A 64th of the chunks shipped by leaves, a different one each point, is read whole (ship-by-leaves.ts `sampled`).
      const every = this.o.leafSampleEvery ?? LEAF_SAMPLE;
      const turn = every > 0 ? this.counters.pointsCommitted % every : -1;
      const sampled = (index: number) => every > 0 && index % every === turn;
      shipped = await shipCut(cut, { chunkSize: a.chunkSize, naming, ...(leafDigests ? { leafDigests, sampled } : {}), base, emptyParent: this.state.lastPointId === null, uploader, signal: shipSignal, ...(runsAgainstBase ? { runsAgainstBase } : {}), onRead: (n) => (this.progress.doneBytes += n) });
      phases.shipMs = performance.now() - at;
      await release();
      at = performance.now(); // commitMs: staging a long change list, then the commit's answer
      const whole = { parentId: this.state.lastPointId, capturedAt: cut.capturedAt.toISOString(), consistency, disks: shipped.disks };
      // A long change list (a large disk's first point) goes ahead in parts; the commit carries the last one.
      const stage = transport.stageChanges?.bind(transport);
      const request = stage ? await stageLongCommit(whole, (part) => retrying(() => stage(part, shipSignal), { ...this.o.shipping?.retry, signal: shipSignal }), this.o.staging) : whole;
      committed = whole;
      // Kept until answered: if it lands and the answer is lost for good, it is sent again at the next point.
      this.sent = { replicationId: a.replicationId, chunkSize: a.chunkSize, ...(naming !== 'sha256' ? { naming } : {}), request, ...(everyChunk ? { comparedWithStore: true } : {}) };
      await saveSentCommit(this.o.stateDir, this.sent);
      // A retried commit whose first answer was lost is recognized by the replicator and answered with its point.
      result = await retrying(() => transport.commit(request), { ...this.o.shipping?.retry, signal: shipSignal });
      this.o.onCommitAnswered?.({ pointId: result.pointId, changed: whole.disks.some((d) => d.changes.length > 0), readBytes: shipped.readBytes });
      phases.commitMs = performance.now() - at;
    } catch (err) {
      await uploader.abort(err); // a failure outside the uploader (a disk read) leaves its uploads running
      const { wireBytes, patches, whole, refused } = uploader.stats;
      this.log.info({ wireBytes, patches, whole, refused }, 'cut abandoned: what it uploaded stays stored for the next cut');
      if (err instanceof BasesMissingError) {
        if (this.wholeOn.size > 100_000) this.wholeOn.clear(); // a bound, far beyond any real case
        for (const b of err.bases) this.wholeOn.add(b);
      }
      if (refusedForGood(err)) await this.forgetSent();
      await release();
      this.counters.cutsAbandoned++;
      await cut.abandon();
      if (groupCut) await this.groupClient.result(groupCut.cutId, { error: `point not committed: ${(err as Error).message}` }).catch(() => undefined);
      if (isRefugeError(err, 'conflict')) {
        // Our parent is not the latest point: forget our hashes so the next cut compares every chunk against it.
        this.state = { ...this.state, lastPointId: (err.details.latestPointId as string | null) ?? null, disks: {} };
        await saveState(this.o.stateDir, this.state);
      }
      throw err;
    } finally {
      this.addStats(uploader.stats);
      this.uploader = undefined;
      this.shipping = undefined;
    }
    this.state = { ...this.state, lastPointId: result.pointId, lastPointAt: cut.capturedAt.toISOString(), disks: shipped.hashes };
    // The log records the point as changes to the hashes remembered before; a cut compared with anything else (the
    // store's hashes, every chunk) is saved whole.
    const saving = performance.now();
    await saveState(this.o.stateDir, this.state, committed && !everyChunk ? { parentId: committed.parentId, disks: committed.disks } : undefined);
    await this.forgetSent();
    phases.saveMs = performance.now() - saving;
    await cut.complete();
    this.counters.pointsCommitted++;
    this.lastCutCommitted = true;
    if (consistency === 'app') this.counters.appConsistentPoints++;
    if (groupCut) {
      const r = await this.groupClient.result(groupCut.cutId, { pointId: result.pointId }).catch((err: unknown) => {
        this.log.warn({ err }, 'group cut result not delivered');
        return undefined;
      });
      this.log.info({ cut: groupCut.cutId, group: groupCut.group, point: result.pointId, state: r?.state }, 'group cut point committed');
    }
    this.counters.readBytes += shipped.readBytes;
    this.progress = { phase: 'idle', doneBytes: totalBytes, totalBytes, pendingBytes: 0 };
    this.lastError = undefined;
    this.log.info(
      { point: result.pointId, consistency, changedBytes: result.changedBytes, readBytes: shipped.readBytes, wireBytes: uploader.stats.wireBytes, patches: uploader.stats.patches, ...roundedMs(phases) },
      'recovery point committed',
    );
    void this.heartbeat();
  }

  /**
   * Sends again a commit whose answer never came (sent-commit.ts), before anything new is cut: answered (with the
   * point it made then, or now), the agent continues from that point with its parent's hashes and the commit's
   * changes; refused, it is forgotten; unanswered again, this point fails and the next one tries again. True when
   * the agent now continues from the resent commit's point.
   */
  private async settleSent(a: ReplicationAssignment, transport: ReplicatorTransport): Promise<boolean> {
    const sent = this.sent;
    if (!sent) return false;
    let settled = false;
    // Hashed as the store names chunks now (a commit of another naming would only be refused: forgotten instead).
    const current = sent.replicationId === a.replicationId && sent.chunkSize === a.chunkSize && (sent.naming ?? 'sha256') === (a.naming ?? 'sha256') && this.state.replicationId === a.replicationId;
    // A parent other than our last point: answered after all (killed between saving the state and forgetting it).
    if (current && sent.request.parentId === this.state.lastPointId) {
      try {
        const r = await transport.commit(sent.request);
        // Changes found against the store's hashes (a resync) apply to those, not to the hashes remembered here.
        const after = sent.comparedWithStore ? undefined : hashesAfter(this.state.disks, sent.request, a.chunkSize);
        this.state = { ...this.state, lastPointId: r.pointId, lastPointAt: sent.request.capturedAt, disks: after ?? {} };
        await saveState(this.o.stateDir, this.state, after && { parentId: sent.request.parentId, disks: sent.request.disks });
        this.log.info({ point: r.pointId, capturedAt: sent.request.capturedAt }, 'a commit whose answer was lost is answered now: continuing from its point');
        settled = true;
      } catch (err) {
        // Unreachable still: try again at the next point. Any other answer (a refusal, or a replicator error that
        // would recur) ends the wait: at worst the next point compares every chunk.
        if (!isRefugeError(err) || err.code === 'unavailable') throw err;
        this.log.info({ err }, 'a commit whose answer was lost is refused now: continuing without it');
      }
    }
    await this.forgetSent();
    return settled;
  }

  private async forgetSent(): Promise<void> {
    if (!this.sent) return;
    this.sent = undefined;
    await clearSentCommit(this.o.stateDir);
  }

  private addStats(s: UploadStats): void {
    const t = this.counters.upload;
    for (const k of Object.keys(t) as (keyof UploadStats)[]) t[k] += s[k];
  }
}
