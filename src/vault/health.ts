import type { Machine, Policy, RecoveryPoint, Replication } from './model.js';
import { isReplicating } from './replication-state.js';

export const HEALTH = ['normal', 'warning', 'critical'] as const;
export type Health = (typeof HEALTH)[number];

export interface HealthError {
  code: 'rpo-over-threshold' | 'no-recent-point' | 'agent-heartbeat-lost' | 'agent-error';
  severity: Exclude<Health, 'normal'>;
  message: string;
}

/** After this long without a heartbeat the agent counts as lost. */
export const HEARTBEAT_LOST_SECONDS = 120;
/** ASR raises an error when no crash-consistent point was made for 60 minutes. */
export const NO_POINT_CRITICAL_SECONDS = 3600;

/**
 * A replication's health (ASR's Normal / Warning / Critical) with the errors behind it, derived from its RPO, its
 * policy's threshold and its agent's heartbeat. Only replications that are replicating can be unhealthy this way.
 */
export function replicationHealth(r: Replication, m: Machine, p: Policy, latest: RecoveryPoint | undefined, now: Date): { health: Health; errors: HealthError[] } {
  const errors: HealthError[] = [];
  if (isReplicating(r.state)) {
    const heartbeatAge = m.lastHeartbeatAt ? (now.getTime() - Date.parse(m.lastHeartbeatAt)) / 1000 : Infinity;
    if (heartbeatAge > HEARTBEAT_LOST_SECONDS) {
      errors.push({ code: 'agent-heartbeat-lost', severity: 'critical', message: `no heartbeat from the agent of '${m.name}' for ${Math.round(heartbeatAge)} s` });
    }
    if (m.lastAgentError) errors.push({ code: 'agent-error', severity: 'warning', message: m.lastAgentError });
    if (latest) {
      const rpo = (now.getTime() - Date.parse(latest.capturedAt)) / 1000;
      if (rpo > NO_POINT_CRITICAL_SECONDS) {
        errors.push({ code: 'no-recent-point', severity: 'critical', message: `no recovery point for ${Math.round(rpo / 60)} minutes` });
      } else if (rpo > p.rpoThresholdSeconds) {
        errors.push({ code: 'rpo-over-threshold', severity: 'warning', message: `RPO ${Math.round(rpo)} s is over the policy's ${p.rpoThresholdSeconds} s` });
      }
    }
  }
  const health: Health = errors.some((e) => e.severity === 'critical') ? 'critical' : errors.length > 0 ? 'warning' : 'normal';
  return { health, errors };
}
