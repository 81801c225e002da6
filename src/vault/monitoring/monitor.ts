import { silentLogger, type Logger } from '../../core/log.js';
import { replicationHealth } from '../health.js';
import type { JobListener, JobView } from '../jobs/definitions.js';
import type { VaultRepositories } from '../repositories/index.js';
import type { CertificateFacts } from '../security/pki.js';
import type { AlertRepository } from './alerts.js';
import type { AlertKind } from './channels/channel.js';
import type { EventRepository } from './events.js';

/** Health errors that are alerts of the same name (an agent's own error stays a health error only). */
const HEALTH_ALERTS: AlertKind[] = ['rpo-over-threshold', 'no-recent-point', 'agent-heartbeat-lost'];
const FAILOVER_JOBS = new Set(['failover', 'test-failover', 'commit']);
/** Warn this long before the vault's certificate expires; critical in the last week. */
export const CERT_WARNING_DAYS = 30;
export const CERT_CRITICAL_DAYS = 7;

export interface MonitorDeps {
  repos: VaultRepositories;
  alerts: AlertRepository;
  events: EventRepository;
  /** The vault's server certificate, when it serves HTTPS. */
  certificate?: () => CertificateFacts | undefined;
  log?: Logger;
}

/**
 * Turns state into alerts and events: replication health (RPO over the policy's threshold, no point for too long,
 * agent heartbeat lost) and the server certificate's expiry on every `evaluate`, raising alerts that appear and
 * resolving those that cleared; failed jobs as they end. Runs in every vault process; alerts are deduplicated in
 * the database, so that is safe.
 */
export class Monitor implements JobListener {
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(private readonly deps: MonitorDeps) {
    this.log = deps.log ?? silentLogger;
  }

  start(intervalMs = 30_000): void {
    this.timer = setInterval(() => void this.evaluate().catch((err: unknown) => this.log.error({ err }, 'health evaluation failed')), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async jobEnded(job: JobView): Promise<void> {
    const severity = job.state === 'failed' ? 'warning' : 'info';
    const subject = job.replicationId ? (await this.deps.repos.replications.byId(job.replicationId).catch(() => undefined))?.name ?? job.id : job.id;
    await this.deps.events.record({
      vaultId: job.vaultId,
      type: `job.${job.state}`,
      severity,
      subject,
      message: `${job.type} ${job.state}${job.error ? `: ${job.error.message}` : ''}`,
      details: { jobId: job.id, type: job.type },
    });
    if (job.state === 'failed') {
      await this.deps.alerts.raise(job.vaultId, {
        kind: 'job-failed',
        subject: `${job.type} ${subject}`,
        severity: FAILOVER_JOBS.has(job.type) ? 'critical' : 'warning',
        message: `job ${job.id} (${job.type} of ${subject}) failed: ${job.error?.message ?? 'unknown error'}`,
        details: { jobId: job.id },
      });
    } else if (job.state === 'succeeded') {
      await this.deps.alerts.resolve(job.vaultId, 'job-failed', `${job.type} ${subject}`);
    }
  }

  /** One pass over every vault; returns the alerts raised (new) in it. */
  async evaluate(now = new Date()): Promise<number> {
    const { repos, alerts } = this.deps;
    let raised = 0;
    for (const vault of await repos.vaults.list()) {
      const reps = await repos.replications.list(vault.id);
      const [machines, policies, latest] = await Promise.all([
        repos.machines.byIds([...new Set(reps.map((r) => r.machineId))]),
        repos.policies.list(vault.id),
        repos.replications.latestPoints(reps.map((r) => r.id)),
      ]);
      const machineById = new Map(machines.map((m) => [m.id, m]));
      const policyById = new Map(policies.map((p) => [p.id, p]));
      // Only changes touch the database: a new alert, a changed severity, or an active alert whose cause cleared.
      const active = new Map((await alerts.list(vault.id, { state: 'active', limit: 100_000 })).map((a) => [`${a.kind}:${a.subject}`, a]));
      for (const r of reps) {
        const m = machineById.get(r.machineId);
        const p = policyById.get(r.policyId);
        if (!m || !p) continue;
        const { errors } = replicationHealth(r, m, p, latest.get(r.id), now);
        for (const kind of HEALTH_ALERTS) {
          const e = errors.find((x) => x.code === kind);
          const current = active.get(`${kind}:${r.name}`);
          if (e && current?.severity !== e.severity) raised += Number((await alerts.raise(vault.id, { kind, subject: r.name, severity: e.severity, message: e.message })).raised);
          else if (!e && current) await alerts.resolve(vault.id, kind, r.name);
        }
      }
      const cert = this.deps.certificate?.();
      if (cert) {
        const days = (Date.parse(cert.notAfter) - now.getTime()) / 86400_000;
        if (days < CERT_WARNING_DAYS) {
          const message = days <= 0 ? `the vault's certificate expired on ${cert.notAfter}` : `the vault's certificate expires in ${Math.floor(days)} days (${cert.notAfter})`;
          raised += Number((await alerts.raise(vault.id, { kind: 'certificate-expiring', subject: 'vault-server', severity: days < CERT_CRITICAL_DAYS ? 'critical' : 'warning', message })).raised);
        } else {
          await alerts.resolve(vault.id, 'certificate-expiring', 'vault-server');
        }
      }
    }
    return raised;
  }
}
