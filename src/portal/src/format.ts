/** How the portal shows sizes, durations and states. */

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

export function seconds(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return '-';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export const time = (iso: string | null | undefined): string => (iso ? new Date(iso).toLocaleString() : '-');

/** The recovery plan a job runs, if it is a plan's run: plan jobs carry `{ plan: { id, name } }` in their params. */
export function planOf(job: { params: unknown }): string | undefined {
  const p = job.params as { plan?: { name?: unknown } } | null;
  return typeof p?.plan?.name === 'string' ? p.plan.name : undefined;
}

export const percent = (f: number): string => `${Math.round(f * 100)}%`;

/** Mantine colors for health, readiness, job and alert states. */
export function stateColor(state: string): string {
  switch (state) {
    case 'normal':
    case 'pass':
    case 'protected':
    case 'succeeded':
    case 'resolved':
    case 'info':
      return 'green';
    case 'warning':
    case 'waiting':
    case 'seeding':
    case 'queued':
      return 'yellow';
    case 'critical':
    case 'fail':
    case 'failed':
      return 'red';
    case 'running':
      return 'blue';
    default:
      return 'gray';
  }
}
