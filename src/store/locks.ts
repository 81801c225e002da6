import { hostname } from 'node:os';
import { RefugeError, isRefugeError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { sleep } from '../core/durations.js';
import type { StoreBackend } from './backend.js';

/**
 * Locks between processes sharing a store, as objects under `locks/` (backends have no locking of their own):
 * - `shared`: a commit's final step (check its blobs still exist, write the manifest); many at once.
 * - `exclusive`: garbage collection's deleting step; excludes shared and exclusive locks.
 * - `gc`: held for a whole garbage collection, so two never run at once; conflicts only with `gc`.
 * - `writer`: not a lock but a notice: "I hold uploaded blobs no point references yet, since `protectSince`";
 *   garbage collection keeps unreferenced blobs younger than the oldest notice.
 * To take a lock: write it, list all locks, and if a live conflicting one exists delete ours, wait and try again
 * (listing after writing means two contenders cannot both miss each other). A lock is live while its holder
 * refreshes it; one not refreshed for `staleAfterMs`, or whose holder process on this host is gone, is ignored
 * and removed, so a crashed (kill -9) holder never blocks the store for long.
 */

export const LOCK_KINDS = ['shared', 'exclusive', 'gc', 'writer'] as const;
export type LockKind = (typeof LOCK_KINDS)[number];

export interface LockRecord {
  kind: LockKind;
  purpose: string;
  host: string;
  pid: number;
  createdAt: number;
  refreshedAt: number;
  protectSince?: number;
}

export interface LockOptions {
  staleAfterMs?: number;
  refreshMs?: number;
  /** How long to wait for a conflicting lock to go before failing with `unavailable`. */
  timeoutMs?: number;
}

const PREFIX = 'locks/';
const conflicts = (a: LockKind, b: LockKind): boolean =>
  (a === 'exclusive' && (b === 'shared' || b === 'exclusive')) || (b === 'exclusive' && a === 'shared') || (a === 'gc' && b === 'gc');

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export class HeldLock {
  private timer: NodeJS.Timeout | undefined;
  private released = false;
  constructor(
    private readonly locks: StoreLocks,
    readonly key: string,
    readonly record: LockRecord,
  ) {
    this.timer = setInterval(() => void this.refresh().catch(() => undefined), locks.refreshMs);
    this.timer.unref();
  }

  async refresh(protectSince?: number): Promise<void> {
    if (this.released) return;
    if (protectSince !== undefined) this.record.protectSince = protectSince;
    this.record.refreshedAt = Date.now();
    await this.locks.backend.put(this.key, Buffer.from(JSON.stringify(this.record)));
    // A release that ran while this refresh was writing must not leave the lock behind.
    if (this.released) await this.locks.backend.delete(this.key);
  }

  async release(): Promise<void> {
    this.released = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.locks.backend.delete(this.key);
  }
}

export class StoreLocks {
  readonly staleAfterMs: number;
  readonly refreshMs: number;
  readonly timeoutMs: number;

  constructor(
    readonly backend: StoreBackend,
    o: LockOptions = {},
  ) {
    this.staleAfterMs = o.staleAfterMs ?? 120_000;
    this.refreshMs = o.refreshMs ?? Math.floor(this.staleAfterMs / 4);
    this.timeoutMs = o.timeoutMs ?? 600_000;
  }

  private isLive(r: LockRecord, now: number): boolean {
    if (now - r.refreshedAt > this.staleAfterMs) return false;
    return !(r.host === hostname() && r.pid !== process.pid && processGone(r.pid));
  }

  /** Every live lock but `except`; stale ones found on the way are removed. */
  async live(except?: string): Promise<{ key: string; record: LockRecord }[]> {
    const out: { key: string; record: LockRecord }[] = [];
    const now = Date.now();
    for (const key of await this.backend.list(PREFIX)) {
      if (key === except) continue;
      let record: LockRecord;
      try {
        record = JSON.parse((await this.backend.get(key)).toString('utf8')) as LockRecord;
      } catch (err) {
        if (isRefugeError(err, 'not_found')) continue;
        if (err instanceof SyntaxError) {
          await this.backend.delete(key); // a lock object is written whole or not at all; unreadable means foreign junk
          continue;
        }
        throw err;
      }
      if (this.isLive(record, now)) out.push({ key, record });
      else await this.backend.delete(key).catch(() => undefined);
    }
    return out;
  }

  /** Takes a lock of `kind`, waiting while conflicting ones are held. */
  async acquire(kind: LockKind, purpose: string, signal?: AbortSignal): Promise<HeldLock> {
    const deadline = Date.now() + this.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const now = Date.now();
      const record: LockRecord = { kind, purpose, host: hostname(), pid: process.pid, createdAt: now, refreshedAt: now };
      const key = `${PREFIX}${newId('lock')}.json`;
      await this.backend.put(key, Buffer.from(JSON.stringify(record)));
      const blocking = (await this.live(key)).find((l) => conflicts(kind, l.record.kind));
      if (!blocking) return new HeldLock(this, key, record);
      await this.backend.delete(key);
      if (Date.now() > deadline) {
        const b = blocking.record;
        throw new RefugeError('unavailable', `the replica store at ${this.backend.location} is busy: ${b.purpose} (${b.kind} lock of ${b.host} pid ${b.pid} since ${new Date(b.createdAt).toISOString()})`, {
          hint: 'try again when it finishes; a lock of a crashed process expires by itself',
          details: { lock: blocking.key },
        });
      }
      await sleep(Math.min(1000, 20 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random()), signal);
    }
  }

  /** The oldest time from which a writer still holds unreferenced uploads, if any writer does. */
  async oldestWriterProtection(): Promise<number | undefined> {
    const times = (await this.live()).flatMap((l) => (l.record.kind === 'writer' && l.record.protectSince !== undefined ? [l.record.protectSince] : []));
    return times.length > 0 ? Math.min(...times) : undefined;
  }
}
