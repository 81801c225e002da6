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
  const sorted = oldestFirst(points);
  const span = spanSeconds(sorted);
  if (span === null) return null;
  return sorted.slice(1).reduce((s, p) => s + p.changedBytes, 0) / span;
}

/**
 * Average churn of each disk over the points given, as for `churn`, from the points that report it per disk (a
 * disk's share tells which one drives the replication's churn: ASR limits churn per disk). Empty when fewer than
 * two points report it.
 */
export function diskChurn(points: Point[]): { name: string; bytesPerSecond: number }[] {
  const sorted = oldestFirst(points.filter((p) => p.diskChurn !== null));
  const span = spanSeconds(sorted);
  if (span === null) return [];
  const changed = new Map<string, number>();
  for (const p of sorted.slice(1)) for (const d of p.diskChurn ?? []) changed.set(d.name, (changed.get(d.name) ?? 0) + d.changedBytes);
  return [...changed].map(([name, bytes]) => ({ name, bytesPerSecond: bytes / span })).sort((a, b) => a.name.localeCompare(b.name));
}

const oldestFirst = (points: Point[]) => [...points].sort((a, b) => a.capturedAt.localeCompare(b.capturedAt));

/** Seconds from the first point's capture to the last's; null for fewer than two points or no time between. */
function spanSeconds(sorted: Point[]): number | null {
  if (sorted.length < 2) return null;
  const span = (Date.parse(sorted.at(-1)?.capturedAt ?? '') - Date.parse(sorted[0]?.capturedAt ?? '')) / 1000;
  return span > 0 ? span : null;
}
