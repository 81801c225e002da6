import { RefugeError } from '../core/errors.js';
import type { JobEngine } from '../vault/jobs/engine.js';
import type { JobView } from '../vault/jobs/definitions.js';
import type { Replication } from '../vault/model.js';
import { TRANSITIONS, allowedOperations, type Operation } from '../vault/replication-state.js';
import type { OrchestrationDeps } from './deps.js';
import type { RecoverParams } from './jobs/recover-machine.js';
import type { RecoveryMode } from './jobs/provision-disks.js';
import type { OperationParams } from './jobs/operation-job.js';
import type { ReadinessService } from '../vault/readiness/service.js';
import type { Principal } from '../vault/security/roles.js';

export interface OperationRequest {
  /** For test failover and failover: 'latest' (default) or a recovery point id. */
  point?: string;
  /** Who asks (recorded on the job; the readiness account check looks at its role). */
  principal?: Principal | null;
  /** An owner's reason to go ahead although a readiness check failed. */
  override?: { reason: string };
  /** For test failover and failover: instant or restore-first (jobs/provision-disks.ts); unset: instant where possible. */
  mode?: RecoveryMode;
  /** For an instant recovery: the hydration copy's limit, MiB/s. */
  hydrationMiBps?: number;
}

/**
 * Accepts operations on replications: checks them against the state machine, picks the recovery point, and
 * creates the job in the same transaction as the state change (compare-and-set), so of two concurrent requests
 * exactly one wins and the other gets a `conflict`.
 */
export class OperationService {
  constructor(
    private readonly deps: OrchestrationDeps,
    private readonly engine: JobEngine,
    private readonly readiness?: ReadinessService,
  ) {}

  async request(vaultName: string, replicationName: string, operation: Operation, req: OperationRequest = {}): Promise<JobView> {
    const vault = await this.deps.repos.vaults.get(vaultName);
    const rep = await this.deps.repos.replications.get(vault.id, replicationName);
    assertAllowed(rep, operation);
    // Before every failover the readiness checks that matter at the recovery site run; a fail blocks.
    if (this.readiness && (operation === 'failover' || operation === 'test-failover')) {
      const report = await this.readiness.forReplication(vault, rep, { trigger: operation, principal: req.principal ?? null, permission: 'operate' });
      await this.readiness.gate(report, req.principal ?? null, req.override);
    }
    const previous = { state: rep.state, testFailoverState: rep.testFailoverState, activeJobId: rep.activeJobId };
    let params: OperationParams | RecoverParams = { operation, previous };
    if (operation === 'test-failover' || operation === 'failover') {
      const point = await this.choosePoint(rep, req.point ?? 'latest');
      params = {
        operation,
        previous,
        kind: operation === 'test-failover' ? 'test' : 'failover',
        pointId: point,
        targetMachine: operation === 'test-failover' ? `${rep.name}-test` : rep.name,
        requestedAt: new Date().toISOString(),
        ...(req.mode ? { mode: req.mode } : {}),
        ...(req.hydrationMiBps ? { hydrationMiBps: req.hydrationMiBps } : {}),
      } satisfies RecoverParams;
    }
    const jobId = await this.deps.repos.db.transaction().execute(async (trx) => {
      const id = await this.engine.create(trx, { vaultId: vault.id, type: operation, replicationId: rep.id, params, ...(req.principal ? { requestedBy: req.principal.name } : {}) });
      const won = await this.deps.repos.replications.compareAndSetStatus(rep.id, previous, { ...TRANSITIONS[operation].begin, activeJobId: id }, trx);
      if (!won) {
        throw new RefugeError('conflict', `replication '${rep.name}' was changed by another operation at the same time; ${operation} was not started`, {
          hint: `look at \`refuge replication show ${rep.name}\` and retry if still wanted`,
        });
      }
      return id;
    });
    this.engine.kick();
    return this.engine.get(jobId);
  }

  private async choosePoint(rep: Replication, choice: string): Promise<string> {
    if (choice === 'latest') {
      const latest = await this.deps.repos.replications.latestPoint(rep.id);
      if (!latest) throw new RefugeError('failed_precondition', `replication '${rep.name}' has no recovery point yet`);
      return latest.id;
    }
    return (await this.deps.repos.replications.getPoint(rep.id, choice)).id;
  }
}

export function assertAllowed(rep: Replication, operation: Operation): void {
  const allowed = allowedOperations(rep);
  if (allowed.includes(operation)) return;
  const why = rep.activeJobId ? `job ${rep.activeJobId} is running on it` : `it is ${rep.state}${rep.testFailoverState !== 'none' ? ` with a test failover ${rep.testFailoverState}` : ''}`;
  throw new RefugeError('operation_not_allowed', `${operation} is not allowed on replication '${rep.name}': ${why}; allowed now: ${allowed.join(', ') || 'none'}`, {
    details: { allowedOperations: allowed, state: rep.state, testFailoverState: rep.testFailoverState },
  });
}
