import { RefugeError } from '../../core/errors.js';
import { OPERATIONS, type Operation } from '../../vault/replication-state.js';
import type { Replication } from '../../vault/model.js';
import { POINT_CHOICES } from '../point-choice.js';

/**
 * The one place that says what a recovery plan operation does to each of its machines: which per-replication
 * operation it runs through `OperationService`, whether the groups' pre/post actions run, the failover type and
 * direction the actions are told, and when a machine counts as already done (so a resumed plan job does not ask
 * twice). A plan operation whose per-machine operation the vault does not offer yet is refused with a clear error.
 */
export const PLAN_OPERATIONS = ['test-failover', 'test-failover-cleanup', 'planned-failover', 'failover', 'commit', 'reprotect', 'failback'] as const;
export type PlanOperation = (typeof PLAN_OPERATIONS)[number];

/** Point choices a plan passes to every machine (a custom point id is per machine, so plans take named choices). */
export const PLAN_POINT_CHOICES = ['latest', 'latest-processed', 'latest-app-consistent', 'latest-multi-machine'] as const;
export type PlanPointChoice = (typeof PLAN_POINT_CHOICES)[number];

export interface PlanOperationSpec {
  /** The per-replication operation's name as OperationService knows it. */
  machineOperation: string;
  /** Whether the groups' pre/post actions run (they do for everything that brings machines up). */
  runsActions: boolean;
  failoverType: 'test' | 'planned' | 'unplanned' | 'cleanup' | 'commit' | 'reprotect' | 'failback';
  /** Where the machines come up, seen from their replication: the target site, or back at the source. */
  direction: 'primary-to-recovery' | 'recovery-to-primary';
  /** Whether the operation takes a point choice. */
  takesPoint: boolean;
  /** A machine already in the state this operation leads to (since `since`) is skipped instead of asked again. */
  done(rep: Replication, since: string): boolean;
  /** A machine this operation does not concern (e.g. cleanup of a machine without a test copy) is skipped. */
  notApplicable?(rep: Replication): boolean;
}

const after = (at: string | undefined, since: string) => at !== undefined && at >= since;

export const PLAN_OPERATION_SPECS: Record<PlanOperation, PlanOperationSpec> = {
  'test-failover': {
    machineOperation: 'test-failover', runsActions: true, failoverType: 'test', direction: 'primary-to-recovery', takesPoint: true,
    // startedAt is set only once the copy runs (a failed test failover also ends `running`, for its cleanup).
    done: (r, since) => r.testFailoverState === 'running' && after(r.failover.test?.requestedAt, since) && r.failover.test?.startedAt !== undefined,
  },
  'test-failover-cleanup': {
    machineOperation: 'test-failover-cleanup', runsActions: false, failoverType: 'cleanup', direction: 'primary-to-recovery', takesPoint: false,
    done: (r) => r.testFailoverState === 'none',
    notApplicable: (r) => r.testFailoverState === 'none' && r.activeJobId === null,
  },
  'planned-failover': {
    machineOperation: 'planned-failover', runsActions: true, failoverType: 'planned', direction: 'primary-to-recovery', takesPoint: false,
    done: (r, since) => (r.state === 'failed-over' || r.state === 'failover-committed') && after(r.failover.failover?.requestedAt, since),
  },
  failover: {
    machineOperation: 'failover', runsActions: true, failoverType: 'unplanned', direction: 'primary-to-recovery', takesPoint: true,
    done: (r, since) => (r.state === 'failed-over' || r.state === 'failover-committed') && after(r.failover.failover?.requestedAt, since),
  },
  commit: {
    machineOperation: 'commit', runsActions: false, failoverType: 'commit', direction: 'primary-to-recovery', takesPoint: false,
    done: (r) => r.state === 'failover-committed',
  },
  reprotect: {
    machineOperation: 'reprotect', runsActions: false, failoverType: 'reprotect', direction: 'recovery-to-primary', takesPoint: false,
    done: () => false,
  },
  failback: {
    machineOperation: 'failback', runsActions: true, failoverType: 'failback', direction: 'recovery-to-primary', takesPoint: false,
    done: () => false,
  },
};

/** Whether this vault's OperationService offers the per-machine operation a plan operation needs. */
export function isAvailable(op: PlanOperation): boolean {
  return (OPERATIONS as readonly string[]).includes(PLAN_OPERATION_SPECS[op].machineOperation);
}

/** The spec of a plan operation that can run here, or a clear error saying why it cannot (yet). */
export function planOperationSpec(op: PlanOperation): PlanOperationSpec & { machineOperation: Operation } {
  const spec = PLAN_OPERATION_SPECS[op];
  if (!isAvailable(op)) {
    throw new RefugeError('failed_precondition', `recovery plans cannot run ${op} yet: this vault has no per-machine '${spec.machineOperation}' operation`, {
      hint: `available plan operations: ${PLAN_OPERATIONS.filter(isAvailable).join(', ')}`,
      details: { availableOperations: PLAN_OPERATIONS.filter(isAvailable) },
    });
  }
  return spec as PlanOperationSpec & { machineOperation: Operation };
}

export function checkPointChoice(op: PlanOperation, point: string | undefined): string | undefined {
  if (point === undefined) return undefined;
  if (!PLAN_OPERATION_SPECS[op].takesPoint) throw new RefugeError('invalid_argument', `${op} takes no recovery point`, { details: { field: '/body/point' } });
  // A plan names its point by choice: a point id belongs to one replication, a plan spans several.
  if (!(POINT_CHOICES as readonly string[]).includes(point)) {
    throw new RefugeError('invalid_argument', `point choice '${point}' is not a point choice a plan can use; use one of: ${POINT_CHOICES.join(', ')}`, { details: { field: '/body/point' } });
  }
  return point;
}
