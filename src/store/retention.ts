import { RefugeError } from '../core/errors.js';
import type { Consistency } from './manifest.js';

/**
 * Which recovery points to keep, by age. The default follows Azure Site Recovery's schedule
 * (../shared/docs/reference-asr.md): every point of the last 2 hours, then one per hour up to 1 day, one per 2
 * hours up to 7 days, one per 4 hours up to 15 days, none older. Within each period the latest app-consistent point
 * is kept when there is one (it recovers applications cleanly), else the latest point. Periods are aligned to the
 * epoch, so pruning again later keeps the same points. The latest point is always kept: it is the parent of the next.
 */

export interface RetentionPolicy {
  /** Points younger than this are all kept. */
  keepAllMs: number;
  /** From youngest to oldest: points up to `upToMs` old keep one per `everyMs`. */
  tiers: { upToMs: number; everyMs: number }[];
  /** Prefer app-consistent points within a period. */
  preferAppConsistent: boolean;
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

export const ASR_RETENTION: RetentionPolicy = {
  keepAllMs: 2 * HOUR,
  tiers: [
    { upToMs: DAY, everyMs: HOUR },
    { upToMs: 7 * DAY, everyMs: 2 * HOUR },
    { upToMs: 15 * DAY, everyMs: 4 * HOUR },
  ],
  preferAppConsistent: true,
};

/** The ASR schedule cut at a policy's retention window (ASR allows up to 15 days; its default is 1 day). */
export function asrRetention(retentionMs: number): RetentionPolicy {
  if (!(retentionMs > 0)) throw new RefugeError('invalid_argument', 'retention must be positive');
  const tiers = ASR_RETENTION.tiers.filter((t, i, all) => i === 0 || (all[i - 1] as { upToMs: number }).upToMs < retentionMs).map((t) => ({ ...t, upToMs: Math.min(t.upToMs, retentionMs) }));
  return { ...ASR_RETENTION, keepAllMs: Math.min(ASR_RETENTION.keepAllMs, retentionMs), tiers };
}

export interface PointFacts {
  id: string;
  capturedAt: number;
  consistency: Consistency;
  /** Part of a consistency-group cut: preferred after app-consistency, so the members keep the same cuts. */
  groupCut?: boolean;
}

/** Splits points into those to keep and those to prune under `policy` at time `now`. */
export function selectRetained(points: PointFacts[], policy: RetentionPolicy, now: number): { keep: string[]; prune: string[] } {
  const latest = points.reduce<PointFacts | undefined>((a, p) => (!a || p.capturedAt > a.capturedAt || (p.capturedAt === a.capturedAt && p.id > a.id) ? p : a), undefined);
  const keep = new Set<string>();
  if (latest) keep.add(latest.id);
  const periods = new Map<string, PointFacts>();
  const better = (a: PointFacts, b: PointFacts): boolean => {
    if (policy.preferAppConsistent && a.consistency !== b.consistency) return a.consistency === 'app';
    if (Boolean(a.groupCut) !== Boolean(b.groupCut)) return Boolean(a.groupCut);
    return a.capturedAt > b.capturedAt || (a.capturedAt === b.capturedAt && a.id > b.id);
  };
  for (const p of points) {
    const age = now - p.capturedAt;
    if (age <= policy.keepAllMs) {
      keep.add(p.id);
      continue;
    }
    const tier = policy.tiers.findIndex((t) => age <= t.upToMs);
    if (tier < 0) continue; // older than the retention window
    const every = (policy.tiers[tier] as { everyMs: number }).everyMs;
    const period = `${tier}:${Math.floor(p.capturedAt / every)}`;
    const current = periods.get(period);
    if (!current || better(p, current)) periods.set(period, p);
  }
  for (const p of periods.values()) keep.add(p.id);
  return { keep: points.filter((p) => keep.has(p.id)).map((p) => p.id), prune: points.filter((p) => !keep.has(p.id)).map((p) => p.id) };
}
