import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Replicator } from '../replicator/replicator.js';
import { replicationHealth } from '../vault/health.js';
import type { JobListener, JobView } from '../vault/jobs/definitions.js';
import type { VaultRepositories } from '../vault/repositories/index.js';

/**
 * Prometheus metrics for `GET /metrics`, in a registry of this vault's own (never the process-global one). Gauges
 * are computed when scraped, from the database (RPO, health, pending bytes, churn) and the in-process replicator
 * (bytes received); job durations are observed as jobs end.
 */
export class VaultMetrics implements JobListener {
  readonly registry = new Registry();
  private readonly jobDuration: Histogram<'type' | 'state'>;
  private readonly jobsEnded: Counter<'type' | 'state'>;

  constructor(repos: VaultRepositories, replicator: Replicator) {
    const r = this.registry;
    // The process's own figures (resident memory, V8 heap spaces, event-loop lag, GC): what an operator watches to
    // size a vault (P11: <= 300 MiB with 1,000 replications) and to see a stalled event loop.
    collectDefaultMetrics({ register: r });
    const rpo = new Gauge({ name: 'refuge_replication_rpo_seconds', help: 'Age of the latest recovery point', labelNames: ['vault', 'replication'], registers: [r] });
    const health = new Gauge({ name: 'refuge_replications', help: 'Replications by health', labelNames: ['vault', 'health'], registers: [r] });
    const pending = new Gauge({ name: 'refuge_replication_pending_bytes', help: 'Bytes read at the source and not yet acknowledged', labelNames: ['vault', 'replication'], registers: [r] });
    const churn = new Gauge({ name: 'refuge_replication_churn_bytes', help: 'Bytes changed in the latest recovery point', labelNames: ['vault', 'replication'], registers: [r] });
    const diskChurn = new Gauge({ name: 'refuge_disk_churn_bytes', help: 'Bytes changed on each disk in the latest recovery point (points that report it)', labelNames: ['vault', 'replication', 'disk'], registers: [r] });
    const received = new Gauge({ name: 'refuge_replicator_received_bytes', help: 'Chunk bytes received by this process since it started', labelNames: ['replication'], registers: [r] });
    const points = new Gauge({ name: 'refuge_replicator_points_committed', help: 'Points committed by this process since it started', labelNames: ['replication'], registers: [r] });
    this.jobDuration = new Histogram({ name: 'refuge_job_duration_seconds', help: 'Job duration from creation to end', labelNames: ['type', 'state'], buckets: [1, 5, 15, 60, 300, 1800, 7200], registers: [r] });
    this.jobsEnded = new Counter({ name: 'refuge_jobs_ended_total', help: 'Jobs ended, by type and state', labelNames: ['type', 'state'], registers: [r] });

    const seen = new Gauge({ name: 'refuge_scrape_replications', help: 'Replications seen by the last scrape', registers: [r] });
    // Every database-derived gauge, refreshed once per scrape.
    this.refresh = async () => {
      {
        rpo.reset();
        health.reset();
        pending.reset();
        churn.reset();
        diskChurn.reset();
        let total = 0;
        const now = new Date();
        for (const v of await repos.vaults.list()) {
          const reps = await repos.replications.list(v.id);
          const [machines, policies, latest] = await Promise.all([repos.machines.byIds([...new Set(reps.map((x) => x.machineId))]), repos.policies.list(v.id), repos.replications.latestPoints(reps.map((x) => x.id))]);
          const machineById = new Map(machines.map((m) => [m.id, m]));
          const policyById = new Map(policies.map((p) => [p.id, p]));
          const counts = { normal: 0, warning: 0, critical: 0 };
          for (const rep of reps) {
            const m = machineById.get(rep.machineId);
            const p = policyById.get(rep.policyId);
            const point = latest.get(rep.id);
            if (!m || !p) continue;
            counts[replicationHealth(rep, m, p, point, now).health]++;
            if (point) {
              rpo.set({ vault: v.name, replication: rep.name }, (now.getTime() - Date.parse(point.capturedAt)) / 1000);
              churn.set({ vault: v.name, replication: rep.name }, point.changedBytes);
              for (const d of point.diskChurn ?? []) diskChurn.set({ vault: v.name, replication: rep.name, disk: d.name }, d.changedBytes);
            }
            pending.set({ vault: v.name, replication: rep.name }, rep.progress?.pendingBytes ?? 0);
          }
          for (const [h, n] of Object.entries(counts)) health.set({ vault: v.name, health: h }, n);
          total += reps.length;
        }
        for (const [id, c] of replicator.counters) {
          received.set({ replication: id }, c.bytesReceived);
          points.set({ replication: id }, c.pointsCommitted);
        }
        seen.set(total);
      }
    };
  }

  /** Recomputes the gauges from the database; call before `registry.metrics()`. */
  readonly refresh: () => Promise<void>;

  async text(): Promise<string> {
    await this.refresh();
    return this.registry.metrics();
  }

  async jobEnded(job: JobView): Promise<void> {
    this.jobsEnded.inc({ type: job.type, state: job.state });
    if (job.endedAt) this.jobDuration.observe({ type: job.type, state: job.state }, (Date.parse(job.endedAt) - Date.parse(job.createdAt)) / 1000);
  }
}
