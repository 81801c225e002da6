import { RefugeError } from '../core/errors.js';
import { ID_PATTERN } from '../core/ids.js';
import type { JobEngine } from '../vault/jobs/engine.js';
import type { JobView } from '../vault/jobs/definitions.js';
import type { Replication } from '../vault/model.js';
import { TRANSITIONS, allowedOperations, type JobOperation, type Operation } from '../vault/replication-state.js';
import type { OrchestrationDeps } from './deps.js';
import type { RecoverParams } from './jobs/recover-machine.js';
import type { RecoveryMode } from './jobs/provision-disks.js';
import type { OperationParams } from './jobs/operation-job.js';
import { POINT_CHOICES, resolvePoint, type PointChoice } from './point-choice.js';
import type { ReadinessService } from '../vault/readiness/service.js';
import type { Principal } from '../vault/security/roles.js';

export interface OperationRequest {
  /**
   * For test failover, failover and change recovery point: a point choice (`latest` (default), `latest-processed`,
   * `latest-app-consistent`, `latest-multi-machine`) or a recovery point id.
   */
  point?: string;
  /** Who asks (recorded on the job; the readiness account check looks at its role). */
  principal?: Principal | null;
  /** An owner's reason to go ahead although a readiness check failed. */
  override?: { reason: string };
  /** For test failover and failover: instant or restore-first (jobs/provision-disks.ts); unset: instant where possible. */
  mode?: RecoveryMode;
  /** For an instant recovery: the hydration copy's limit, MiB/s. */
  hydrationMiBps?: number;
  /**
   * Planned failover of a machine its site's fabric does not run (e.g. started by hand beside its agent): the
   * operator confirms it is shut down, so the final point holds its last write.
   */
  sourceShutDown?: boolean;
  /** `failover` with `planned: true` is a planned failover (for plans that pass the failover type as a flag). */
  planned?: boolean;
}

/** Operations before which the readiness checks of the recovery site run (a fail blocks). */
const GATED: readonly Operation[] = ['test-failover', 'failover', 'planned-failover', 'failback'];

/**
 * Accepts operations on replications: checks them against the state machine, picks the recovery point, and
 * creates the job in the same transaction as the state change (compare-and-set), so of two concurrent requests
 * exactly one wins and the other gets a `conflict`. `cancel` is not a job: it cancels the replication's running job.
 */
export class OperationService {
  constructor(
    private readonly deps: OrchestrationDeps,
    private readonly engine: JobEngine,
    private readonly readiness?: ReadinessService,
  ) {}

  async request(vaultName: string, replicationName: string, requested: Operation, req: OperationRequest = {}): Promise<JobView> {
    const vault = await this.deps.repos.vaults.get(vaultName);
    let rep = await this.deps.repos.replications.get(vault.id, replicationName);
    // Plans ask for `failover` with `planned` in either direction: back home a planned failover is the failback.
    const op: Operation = requested === 'failover' && req.planned ? (rep.reversed ? 'failback' : 'planned-failover') : requested;
    assertAllowed(rep, op);
    if (op === 'cancel') return this.cancel(rep);
    if (this.readiness && GATED.includes(op)) {
      const report = await this.readiness.forReplication(vault, rep, { trigger: op === 'test-failover' ? 'test-failover' : 'failover', principal: req.principal ?? null, permission: 'operate' });
      await this.readiness.gate(report, req.principal ?? null, req.override);
      // The checks take time: another operation may have started (or even finished) meanwhile. Judge the
      // replication as it is now, so the compare-and-set below never lets through what the state machine refuses.
      rep = await this.deps.repos.replications.byId(rep.id);
      assertAllowed(rep, op);
    }
    const previous = { state: rep.state, testFailoverState: rep.testFailoverState, activeJobId: rep.activeJobId };
    const params = await this.paramsFor(rep, op, previous, req);
    const jobId = await this.deps.repos.db.transaction().execute(async (trx) => {
      const id = await this.engine.create(trx, { vaultId: vault.id, type: op, replicationId: rep.id, params, ...(req.principal ? { requestedBy: req.principal.name } : {}) });
      const won = await this.deps.repos.replications.compareAndSetStatus(rep.id, previous, { ...TRANSITIONS[op].begin, activeJobId: id }, trx);
      if (!won) {
        throw new RefugeError('conflict', `replication '${rep.name}' was changed by another operation at the same time; ${op} was not started`, {
          hint: `look at \`refuge replication show ${rep.name}\` and retry if still wanted`,
        });
      }
      return id;
    });
    this.engine.kick();
    return this.engine.get(jobId);
  }

  private async paramsFor(rep: Replication, op: JobOperation, previous: OperationParams['previous'], req: OperationRequest): Promise<OperationParams | RecoverParams> {
    const requestedAt = new Date().toISOString();
    // How the recovered machine gets its disks (jobs/provision-disks.ts): instant or restore-first.
    const disks = { ...(req.mode ? { mode: req.mode } : {}), ...(req.hydrationMiBps ? { hydrationMiBps: req.hydrationMiBps } : {}) };
    switch (op) {
      case 'test-failover':
      case 'failover':
      case 'change-recovery-point': {
        const choice = parseChoice(req.point ?? 'latest');
        // `latest` is resolved inside the job, once in-flight commits have landed; every other choice now, so
        // a bad choice is refused before anything starts.
        const pointId = choice === 'latest' ? undefined : (await resolvePoint(this.deps.repos.replications, rep, choice)).id;
        return {
          operation: op,
          previous,
          kind: op === 'test-failover' ? 'test' : 'failover',
          pointChoice: choice,
          ...(pointId ? { pointId } : {}),
          targetMachine: op === 'test-failover' ? `${rep.name}-test` : rep.name,
          requestedAt,
          ...disks,
        } satisfies RecoverParams;
      }
      case 'planned-failover':
      case 'failback':
        return { operation: op, previous, kind: 'failover', planned: true, sourceShutDown: req.sourceShutDown === true, pointChoice: 'final', targetMachine: rep.name, requestedAt, ...disks } satisfies RecoverParams;
      default:
        return { operation: op, previous, requestedAt };
    }
  }

  /** Cancels the replication's running operation job; the job's failure handling returns the replication. */
  private async cancel(rep: Replication): Promise<JobView> {
    return this.engine.cancel(rep.activeJobId as string);
  }
}

function parseChoice(choice: string): PointChoice {
  if ((POINT_CHOICES as readonly string[]).includes(choice) || new RegExp(ID_PATTERN).test(choice)) return choice;
  throw new RefugeError('invalid_argument', `point '${choice}' is neither a recovery point id nor one of ${POINT_CHOICES.join(', ')}`, { details: { field: '/body/point' } });
}

export function assertAllowed(rep: Replication, operation: Operation): void {
  const allowed = allowedOperations(rep);
  if (allowed.includes(operation)) return;
  const why = rep.activeJobId ? `job ${rep.activeJobId} is running on it` : `it is ${rep.state}${rep.testFailoverState !== 'none' ? ` with a test failover ${rep.testFailoverState}` : ''}`;
  throw new RefugeError('operation_not_allowed', `${operation} is not allowed on replication '${rep.name}': ${why}; allowed now: ${allowed.join(', ') || 'none'}`, {
    details: { allowedOperations: allowed, state: rep.state, testFailoverState: rep.testFailoverState },
  });
}
