import { RefugeError, isRefugeError } from '../../core/errors.js';
import type { JobDefinition, TaskContext, TaskDefinition } from '../../vault/jobs/definitions.js';
import { TRANSITIONS, type JobOperation, type ReplicationStatus } from '../../vault/replication-state.js';
import type { OrchestrationDeps } from '../deps.js';

/** Parameters every operation job carries: the status it began from (to restore on failure) and its own. */
export interface OperationParams {
  operation: JobOperation;
  previous: ReplicationStatus;
  requestedAt?: string;
}

/**
 * Wraps an operation's tasks into a job that moves the replication through the state machine: on success to
 * the operation's `succeed` status, on failure to its `fail` status, releasing the replication either way.
 */
export function operationJob<P extends OperationParams>(
  deps: OrchestrationDeps,
  operation: JobOperation,
  tasks: TaskDefinition<P>[],
  hooks: {
    afterSuccess?(ctx: TaskContext<P>): Promise<void>;
    /**
     * Undoes what a cancelled run left behind (best effort, idempotent), before the status returns. A run that
     * failed keeps what it did, so a restart continues from the failed task.
     */
    afterCancel?(ctx: TaskContext<P>): Promise<void>;
  } = {},
): JobDefinition<P> {
  const settle = async (ctx: TaskContext<P>, outcome: 'succeed' | 'fail'): Promise<void> => {
    const id = ctx.job.replicationId;
    if (!id) throw new RefugeError('internal', `job ${ctx.job.id} has no replication`);
    let rep;
    try {
      rep = await deps.repos.replications.byId(id);
    } catch (err) {
      if (isRefugeError(err, 'not_found') && outcome === 'succeed') return; // e.g. disable removed it
      throw err;
    }
    if (rep.activeJobId !== ctx.job.id) return; // already settled (a restart re-ran this hook)
    const t = TRANSITIONS[operation][outcome];
    const next = t === 'previous' ? { state: ctx.job.params.previous.state, testFailoverState: ctx.job.params.previous.testFailoverState } : t;
    const ok = await deps.repos.replications.compareAndSetStatus(rep.id, rep, { ...next, activeJobId: null });
    if (!ok) throw new RefugeError('conflict', `replication '${rep.name}' changed while job ${ctx.job.id} settled`);
  };
  return {
    type: operation,
    tasks,
    async onSucceeded(ctx) {
      await hooks.afterSuccess?.(ctx);
      await settle(ctx, 'succeed');
    },
    async onFailed(ctx, error) {
      if (error.code === 'cancelled') await hooks.afterCancel?.(ctx).catch((err: unknown) => ctx.log.warn({ err }, `${operation}: undoing a failed run did not finish`));
      await settle(ctx, 'fail');
    },
    // Restarting a failed operation takes the replication again, as a new request would: only from the status
    // the operation began from, and only while no other job holds it.
    async onRestart(trx, job) {
      const id = job.replicationId;
      if (!id) throw new RefugeError('internal', `job ${job.id} has no replication`);
      const ok = await deps.repos.replications.compareAndSetStatus(id, { ...job.params.previous, activeJobId: null }, { ...TRANSITIONS[operation].begin, activeJobId: job.id }, trx);
      if (!ok) {
        const rep = await deps.repos.replications.byId(id, trx);
        throw new RefugeError('operation_not_allowed', `job ${job.id} cannot be restarted: replication '${rep.name}' is no longer ${job.params.previous.state}${rep.activeJobId ? ` (job ${rep.activeJobId} holds it)` : ''}`);
      }
    },
  };
}
