import type { Point } from './types.js';

/**
 * RPO over time from a replication's recovery points: just before each point was committed the RPO had grown to
 * (its commit time - the previous point's capture time); right after, it fell to (commit - capture) of the point.
 * That sawtooth, plus the RPO now, is what the chart draws (in seconds).
 */
export function rpoSeries(points: Point[], now: Date): { at: string; rpo: number }[] {
  const sorted = [...points].sort((a, b) => a.capturedAt.localeCompare(b.capturedAt));
  const out: { at: string; rpo: number }[] = [];
  let previous: Point | undefined;
  for (const p of sorted) {
    const committed = Date.parse(p.committedAt);
    if (previous) out.push({ at: p.committedAt, rpo: (committed - Date.parse(previous.capturedAt)) / 1000 });
    out.push({ at: p.committedAt, rpo: (committed - Date.parse(p.capturedAt)) / 1000 });
    previous = p;
  }
  if (previous) out.push({ at: now.toISOString(), rpo: (now.getTime() - Date.parse(previous.capturedAt)) / 1000 });
  return out.map((x) => ({ at: new Date(x.at).toLocaleTimeString(), rpo: Math.round(x.rpo * 10) / 10 }));
}

/** Average churn (bytes written per second at the source) over the points given. */
export function churn(points: Point[]): number | null {
  if (points.length < 2) return null;
  const sorted = [...points].sort((a, b) => a.capturedAt.localeCompare(b.capturedAt));
  const span = (Date.parse(sorted.at(-1)?.capturedAt ?? '') - Date.parse(sorted[0]?.capturedAt ?? '')) / 1000;
  const changed = sorted.slice(1).reduce((s, p) => s + p.changedBytes, 0);
  return span > 0 ? changed / span : null;
}
