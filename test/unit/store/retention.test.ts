import { describe, expect, it } from 'vitest';
import { ASR_RETENTION, asrRetention, selectRetained, type PointFacts } from '../../../src/store/retention.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const NOW = Date.UTC(2026, 2, 1, 12, 0, 0);

/** A crash-consistent point every 5 minutes (ASR's fixed interval) for `days`, an app-consistent one every hour at :30. */
function history(days: number): PointFacts[] {
  const out: PointFacts[] = [];
  for (let t = NOW - days * DAY; t <= NOW; t += 5 * MIN) {
    out.push({ id: `pt_${t.toString(36)}`, capturedAt: t, consistency: new Date(t).getUTCMinutes() === 30 ? 'app' : 'crash' });
  }
  return out;
}

describe('retention on the Azure Site Recovery schedule', () => {
  const points = history(16);
  const { keep, prune } = selectRetained(points, ASR_RETENTION, NOW);
  const kept = points.filter((p) => keep.includes(p.id));
  const ageOf = (p: PointFacts) => NOW - p.capturedAt;
  const inAges = (from: number, to: number) => kept.filter((p) => ageOf(p) > from && ageOf(p) <= to);

  it('keeps every point of the last 2 hours', () => {
    expect(kept.filter((p) => ageOf(p) <= 2 * HOUR)).toHaveLength(2 * 12 + 1);
  });

  it('keeps one point per hour up to a day, per 2 hours up to 7 days, per 4 hours up to 15 days, none older', () => {
    const hourly = inAges(2 * HOUR, DAY);
    expect(hourly.length).toBeGreaterThanOrEqual(21);
    expect(hourly.length).toBeLessThanOrEqual(23);
    const twoHourly = inAges(DAY, 7 * DAY);
    expect(twoHourly.length).toBeGreaterThanOrEqual(71);
    expect(twoHourly.length).toBeLessThanOrEqual(73);
    const fourHourly = inAges(7 * DAY, 15 * DAY);
    expect(fourHourly.length).toBeGreaterThanOrEqual(47);
    expect(fourHourly.length).toBeLessThanOrEqual(49);
    expect(inAges(15 * DAY, Infinity)).toEqual([]);
    expect(keep.length + prune.length).toBe(points.length);
  });

  it('prefers app-consistent points within a period', () => {
    for (const p of inAges(2 * HOUR, 15 * DAY)) expect(p.consistency).toBe('app');
  });

  it('prefers a consistency-group cut after app-consistency, so the members of a group keep the same cuts', () => {
    // Two members with crash points every 5 minutes, group cuts at :15 of each hour (captured 2 s apart).
    const member = (name: string, skew: number): PointFacts[] =>
      history(2)
        .filter((p) => p.consistency === 'crash')
        .map((p) => ({ ...p, id: `${name}_${p.id}`, capturedAt: p.capturedAt + skew, groupCut: new Date(p.capturedAt).getUTCMinutes() === 15 }));
    const a = member('a', 0);
    const b = member('b', 2000);
    const keptCuts = (pts: PointFacts[]) => {
      const keep = new Set(selectRetained(pts, ASR_RETENTION, NOW).keep);
      return pts.filter((p) => keep.has(p.id) && NOW - p.capturedAt > 2 * HOUR).map((p) => ({ cut: p.groupCut, minute: Math.floor((p.capturedAt - (p.capturedAt % 1000)) / MIN) }));
    };
    const ka = keptCuts(a);
    expect(ka.length).toBeGreaterThan(20);
    expect(ka.every((k) => k.cut)).toBe(true);
    expect(keptCuts(b)).toEqual(ka);
  });

  it('keeps the same points when pruning again later (periods are aligned), and always the latest point', () => {
    const again = selectRetained(kept, ASR_RETENTION, NOW);
    expect(again.keep.sort()).toEqual([...keep].sort());
    const old = [{ id: 'pt_only', capturedAt: NOW - 30 * DAY, consistency: 'crash' as const }];
    expect(selectRetained(old, ASR_RETENTION, NOW)).toEqual({ keep: ['pt_only'], prune: [] });
  });

  it('cuts the schedule at a policy retention (ASR default: 1 day)', () => {
    const oneDay = selectRetained(points, asrRetention(DAY), NOW);
    const oldest = Math.min(...points.filter((p) => oneDay.keep.includes(p.id)).map((p) => p.capturedAt));
    expect(NOW - oldest).toBeLessThanOrEqual(DAY);
    expect(oneDay.keep.length).toBeLessThanOrEqual(25 + 23);
  });
});
