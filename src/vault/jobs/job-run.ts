import type { Kysely, Updateable } from 'kysely';
import { RefugeError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Database, JobTable } from '../db/schema.js';
import { WaitForInput, tasksOf, type JobDefinition, type JobInfo, type JobListener, type JobState, type TaskContext, type TaskState } from './definitions.js';
import { loadJob } from './job-rows.js';

const PROGRESS_SAVE_INTERVAL_MS = 300;

/** Why a run was aborted: each ends the run differently. */
class Interrupt extends Error {
  constructor(readonly kind: 'cancel' | 'shutdown' | 'lease-lost') {
    super(kind === 'cancel' ? 'job cancelled on request' : kind === 'shutdown' ? 'vault is shutting down' : 'job lease lost to another process');
  }
}

export interface JobRunOptions {
  owner: string;
  leaseMs: number;
  log: Logger;
  listeners: JobListener[];
}

/**
 * One process's run of one claimed job: its tasks in order from the first unfinished one, the lease renewed
 * meanwhile (each renewal also notices a cancel asked for by another process), every write fenced by the lease.
 */
export class JobRun {
  readonly done: Promise<void>;
  private readonly abort = new AbortController();

  constructor(
    private readonly db: Kysely<Database>,
    private readonly jobId: string,
    private readonly definitions: Map<string, JobDefinition<unknown>>,
    private readonly o: JobRunOptions,
  ) {
    this.done = this.run();
  }

  cancel(): void {
    this.abort.abort(new Interrupt('cancel'));
  }

  interrupt(): void {
    this.abort.abort(new Interrupt('shutdown'));
  }

  /** Runs `update` on this job's row only while this process holds its lease; false if it does not. */
  private async fenced(values: Updateable<JobTable>): Promise<boolean> {
    const r = await this.db.updateTable('jobs').set(values).where('id', '=', this.jobId).where('leaseOwner', '=', this.o.owner).where('state', '=', 'running').executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  private async setTask(seq: number, values: { state: TaskState; progress?: number; message?: string | null; startedAt?: string; endedAt?: string | null }, started = false): Promise<void> {
    const r = await this.db
      .updateTable('jobTasks')
      .set(values)
      .$if(started, (q) => q.set((eb) => ({ attempts: eb('attempts', '+', 1) })))
      .where('jobId', '=', this.jobId)
      .where('seq', '=', seq)
      .where((eb) => eb.exists(eb.selectFrom('jobs').select('id').where('id', '=', this.jobId).where('leaseOwner', '=', this.o.owner)))
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) !== 1) throw new Interrupt('lease-lost');
  }

  private async renew(): Promise<void> {
    const held = await this.fenced({ leaseExpiresAt: new Date(Date.now() + this.o.leaseMs).toISOString() });
    if (!held) return void this.abort.abort(new Interrupt('lease-lost'));
    const row = await this.db.selectFrom('jobs').select('cancelRequested').where('id', '=', this.jobId).executeTakeFirst();
    if (Number(row?.cancelRequested) === 1) this.cancel();
  }

  private async run(): Promise<void> {
    const renewal = setInterval(() => void this.renew().catch((err: unknown) => this.o.log.warn({ err, job: this.jobId }, 'lease renewal failed')), this.o.leaseMs / 3);
    try {
      await this.execute();
    } catch (err) {
      this.o.log.error({ err, job: this.jobId }, 'job run failed');
    } finally {
      clearInterval(renewal);
    }
  }

  private async execute(): Promise<void> {
    const row = await this.db.selectFrom('jobs').selectAll().where('id', '=', this.jobId).executeTakeFirstOrThrow();
    const def = this.definitions.get(row.type);
    const log = this.o.log.child({ job: this.jobId, type: row.type });
    const info: JobInfo = { id: row.id, vaultId: row.vaultId, type: row.type, replicationId: row.replicationId, params: JSON.parse(row.paramsJson) };
    const result = JSON.parse(row.resultJson) as Record<string, unknown>;
    const tasks = await this.db.selectFrom('jobTasks').selectAll().where('jobId', '=', this.jobId).orderBy('seq').execute();
    let current: (typeof tasks)[number] | undefined;
    let lastSave = 0;
    const ctx: TaskContext = {
      job: info,
      result,
      signal: this.abort.signal,
      log,
      get input() {
        return current?.inputJson ? (JSON.parse(current.inputJson) as unknown) : undefined;
      },
      waitForInput(prompt: string): never {
        throw new WaitForInput(prompt);
      },
      progress: (fraction, message) => {
        const now = Date.now();
        if ((now - lastSave < PROGRESS_SAVE_INTERVAL_MS && fraction < 1) || !current) return;
        lastSave = now;
        // Only while the task still runs: a late save must not undo its end.
        void this.db
          .updateTable('jobTasks')
          .set({ progress: Math.max(0, Math.min(1, fraction)), ...(message === undefined ? {} : { message }) })
          .where('jobId', '=', this.jobId)
          .where('seq', '=', current.seq)
          .where('state', '=', 'running')
          .execute()
          .catch((err: unknown) => log.warn({ err }, 'saving task progress failed'));
      },
    };
    try {
      if (!def) throw new RefugeError('internal', `no job definition for type '${row.type}'`);
      if (Number(row.cancelRequested) === 1) throw new Interrupt('cancel');
      const taskDefs = tasksOf(def, info.params);
      for (const task of tasks) {
        if (task.state === 'succeeded') continue;
        const taskDef = taskDefs[task.seq];
        if (!taskDef || taskDef.name !== task.name) throw new RefugeError('internal', `job ${this.jobId} task ${task.seq} '${task.name}' is not defined`);
        this.abort.signal.throwIfAborted();
        current = task;
        await this.setTask(task.seq, { state: 'running', startedAt: new Date().toISOString(), endedAt: null, progress: 0, message: null }, true);
        log.info({ task: task.name }, 'task started');
        await taskDef.run(ctx);
        this.abort.signal.throwIfAborted();
        await this.setTask(task.seq, { state: 'succeeded', progress: 1, endedAt: new Date().toISOString() });
        await this.fenced({ resultJson: JSON.stringify(result) });
      }
      current = undefined;
      await def.onSucceeded?.(ctx);
      await this.finish('succeeded', result, null, log);
      log.info('job succeeded');
    } catch (thrown) {
      const err = this.abort.signal.aborted ? (this.abort.signal.reason as unknown) : thrown;
      if (thrown instanceof WaitForInput && current) {
        await this.setTask(current.seq, { state: 'waiting', message: thrown.prompt });
        await this.fenced({ state: 'waiting', leaseOwner: null, leaseExpiresAt: null, resultJson: JSON.stringify(result) });
        log.info({ task: current.name, prompt: thrown.prompt }, 'job waiting for input');
        return;
      }
      if (err instanceof Interrupt && err.kind === 'lease-lost') {
        log.warn('job lease lost; another process continues the job');
        return;
      }
      if (err instanceof Interrupt && err.kind === 'shutdown') {
        await this.fenced({ state: 'queued', leaseOwner: null, leaseExpiresAt: null });
        log.warn('job interrupted by shutdown; it resumes on the next start');
        return;
      }
      const cancelled = err instanceof Interrupt;
      const error = cancelled
        ? new RefugeError('cancelled', 'job cancelled on request')
        : err instanceof RefugeError ? err : RefugeError.wrap(err, 'task failed');
      if (cancelled) log.info('job cancelled');
      else log.error({ err: error }, 'job failed');
      if (current) await this.setTask(current.seq, { state: cancelled ? 'cancelled' : 'failed', endedAt: new Date().toISOString(), message: error.message });
      try {
        await def?.onFailed?.(ctx, error);
      } catch (hookErr) {
        log.error({ err: hookErr }, 'job failure handler failed');
      }
      const body = { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) };
      await this.finish(cancelled ? 'cancelled' : 'failed', result, body, log);
    }
  }

  private async finish(state: JobState, result: Record<string, unknown>, error: { code: string; message: string } | null, log: Logger): Promise<void> {
    const ended = await this.fenced({ state, resultJson: JSON.stringify(result), errorJson: error ? JSON.stringify(error) : null, endedAt: new Date().toISOString(), leaseExpiresAt: null });
    if (!ended) return;
    const view = await loadJob(this.db, this.jobId);
    for (const l of this.o.listeners) await l.jobEnded(view).catch((err: unknown) => log.warn({ err }, 'job listener failed'));
  }
}
