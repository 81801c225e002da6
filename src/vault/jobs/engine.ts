import type { Kysely, Transaction } from 'kysely';
import { RefugeError, notFound } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { silentLogger, type Logger } from '../../core/log.js';
import type { Database } from '../db/schema.js';
import type { JobDefinition, JobInfo, JobState, JobView, TaskContext, TaskState } from './definitions.js';

type Db = Kysely<Database> | Transaction<Database>;

const PROGRESS_SAVE_INTERVAL_MS = 300;

/**
 * Runs jobs recorded in the vault database. `create` records a job (inside the caller's transaction, so a job
 * exists exactly when the state change that asked for it happened); `start` runs queued jobs and resumes those a
 * previous process left running. This version assumes one vault process per database; leases for several
 * processes sharing PostgreSQL come with issue 5.
 */
export class JobEngine {
  private readonly definitions = new Map<string, JobDefinition<unknown>>();
  private readonly running = new Map<string, Promise<void>>();
  private readonly abort = new AbortController();
  private started = false;
  private scheduled = false;

  constructor(
    private readonly db: Kysely<Database>,
    definitions: JobDefinition<never>[],
    private readonly log: Logger = silentLogger,
  ) {
    // Each definition narrows its own params type; the engine only passes them through.
    for (const d of definitions) this.definitions.set(d.type, d);
  }

  async create(db: Db, input: { vaultId: string; type: string; replicationId: string | null; params: unknown }): Promise<string> {
    const def = this.definitions.get(input.type);
    if (!def) throw new RefugeError('internal', `no job definition for type '${input.type}'`);
    const id = newId('job');
    await db
      .insertInto('jobs')
      .values({
        id,
        vaultId: input.vaultId,
        type: input.type,
        replicationId: input.replicationId,
        state: 'queued',
        paramsJson: JSON.stringify(input.params ?? {}),
        resultJson: '{}',
        errorJson: null,
        createdAt: new Date().toISOString(),
        startedAt: null,
        endedAt: null,
      })
      .execute();
    await db
      .insertInto('jobTasks')
      .values(def.tasks.map((t, seq) => ({ jobId: id, seq, name: t.name, state: 'pending', progress: 0, message: null, startedAt: null, endedAt: null })))
      .execute();
    return id;
  }

  /** Resumes jobs left running by a previous process, then runs queued jobs as they arrive (see `kick`). */
  async start(): Promise<void> {
    this.started = true;
    await this.db.updateTable('jobs').set({ state: 'queued' }).where('state', '=', 'running').execute();
    this.kick();
  }

  /** Asks the engine to look for queued jobs soon (call after creating one). */
  kick(): void {
    if (!this.started || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.runQueued().catch((err: unknown) => this.log.error({ err }, 'job queue scan failed'));
    });
  }

  /** Stops taking jobs and aborts running ones; they resume on the next start. */
  async stop(): Promise<void> {
    this.started = false;
    this.abort.abort(new RefugeError('unavailable', 'vault is shutting down'));
    await Promise.allSettled(this.running.values());
  }

  /** Resolves when the job has ended (for tests and for `--wait` in-process callers). */
  async waitFor(jobId: string, timeoutMs = 600_000): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.get(jobId);
      if (job.state === 'succeeded' || job.state === 'failed') return job;
      if (Date.now() > deadline) throw new RefugeError('unavailable', `job ${jobId} still ${job.state} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async get(jobId: string): Promise<JobView> {
    const row = await this.db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirst();
    if (!row) throw notFound('job', jobId);
    const tasks = await this.db.selectFrom('jobTasks').selectAll().where('jobId', '=', jobId).orderBy('seq').execute();
    const done = tasks.reduce((n, t) => n + (t.state === 'succeeded' ? 1 : t.state === 'running' ? t.progress : 0), 0);
    return {
      id: row.id,
      vaultId: row.vaultId,
      type: row.type,
      replicationId: row.replicationId,
      state: row.state as JobState,
      progress: tasks.length === 0 ? 1 : done / tasks.length,
      params: JSON.parse(row.paramsJson) as unknown,
      result: JSON.parse(row.resultJson) as Record<string, unknown>,
      error: row.errorJson ? (JSON.parse(row.errorJson) as JobView['error']) : null,
      createdAt: row.createdAt,
      startedAt: row.startedAt,
      endedAt: row.endedAt,
      tasks: tasks.map((t) => ({
        seq: t.seq,
        name: t.name,
        state: t.state as TaskState,
        progress: t.progress,
        message: t.message,
        startedAt: t.startedAt,
        endedAt: t.endedAt,
      })),
    };
  }

  async list(vaultId: string, filter: { replicationId?: string; state?: JobState; limit?: number } = {}): Promise<JobView[]> {
    let q = this.db.selectFrom('jobs').select('id').where('vaultId', '=', vaultId);
    if (filter.replicationId) q = q.where('replicationId', '=', filter.replicationId);
    if (filter.state) q = q.where('state', '=', filter.state);
    const ids = await q.orderBy('createdAt', 'desc').limit(filter.limit ?? 100).execute();
    return Promise.all(ids.map((r) => this.get(r.id)));
  }

  private async runQueued(): Promise<void> {
    const queued = await this.db.selectFrom('jobs').select('id').where('state', '=', 'queued').orderBy('createdAt').execute();
    for (const { id } of queued) {
      if (!this.started || this.running.has(id)) continue;
      const claimed = await this.db
        .updateTable('jobs')
        .set({ state: 'running', startedAt: new Date().toISOString() })
        .where('id', '=', id)
        .where('state', '=', 'queued')
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) !== 1) continue;
      const run = this.execute(id).finally(() => this.running.delete(id));
      this.running.set(id, run);
    }
  }

  private async execute(jobId: string): Promise<void> {
    const row = await this.db.selectFrom('jobs').selectAll().where('id', '=', jobId).executeTakeFirstOrThrow();
    const def = this.definitions.get(row.type);
    const log = this.log.child({ job: jobId, type: row.type });
    const info: JobInfo = { id: row.id, vaultId: row.vaultId, type: row.type, replicationId: row.replicationId, params: JSON.parse(row.paramsJson) };
    const result = JSON.parse(row.resultJson) as Record<string, unknown>;
    let currentSeq = -1;
    let lastSave = 0;
    const ctx: TaskContext = {
      job: info,
      result,
      signal: this.abort.signal,
      log,
      progress: (fraction, message) => {
        const now = Date.now();
        if (now - lastSave < PROGRESS_SAVE_INTERVAL_MS && fraction < 1) return;
        lastSave = now;
        const seq = currentSeq;
        void this.db
          .updateTable('jobTasks')
          .set({ progress: Math.max(0, Math.min(1, fraction)), ...(message === undefined ? {} : { message }) })
          .where('jobId', '=', jobId)
          .where('seq', '=', seq)
          .where('state', '=', 'running')
          .execute()
          .catch((err: unknown) => log.warn({ err }, 'saving task progress failed'));
      },
    };
    try {
      if (!def) throw new RefugeError('internal', `no job definition for type '${row.type}'`);
      const tasks = await this.db.selectFrom('jobTasks').selectAll().where('jobId', '=', jobId).orderBy('seq').execute();
      for (const task of tasks) {
        if (task.state === 'succeeded') continue;
        const taskDef = def.tasks[task.seq];
        if (!taskDef || taskDef.name !== task.name) throw new RefugeError('internal', `job ${jobId} task ${task.seq} '${task.name}' is not defined`);
        currentSeq = task.seq;
        await this.setTask(jobId, task.seq, { state: 'running', startedAt: new Date().toISOString(), endedAt: null, progress: 0 });
        log.info({ task: task.name }, 'task started');
        await taskDef.run(ctx);
        await this.setTask(jobId, task.seq, { state: 'succeeded', progress: 1, endedAt: new Date().toISOString() });
        await this.db.updateTable('jobs').set({ resultJson: JSON.stringify(result) }).where('id', '=', jobId).execute();
      }
      await def.onSucceeded?.(ctx);
      await this.finish(jobId, 'succeeded', result, null);
      log.info('job succeeded');
    } catch (err) {
      if (this.abort.signal.aborted) {
        log.warn({ err }, 'job interrupted by shutdown; it resumes on the next start');
        return;
      }
      const error = err instanceof RefugeError ? err : RefugeError.wrap(err, 'task failed');
      log.error({ err: error }, 'job failed');
      if (currentSeq >= 0) await this.setTask(jobId, currentSeq, { state: 'failed', endedAt: new Date().toISOString(), message: error.message });
      try {
        await def?.onFailed?.(ctx, error);
      } catch (hookErr) {
        log.error({ err: hookErr }, 'job failure handler failed');
      }
      await this.finish(jobId, 'failed', result, { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) });
    }
  }

  private async setTask(jobId: string, seq: number, values: { state: TaskState; progress?: number; message?: string; startedAt?: string; endedAt?: string | null }): Promise<void> {
    await this.db.updateTable('jobTasks').set(values).where('jobId', '=', jobId).where('seq', '=', seq).execute();
  }

  private async finish(jobId: string, state: JobState, result: Record<string, unknown>, error: JobView['error']): Promise<void> {
    await this.db
      .updateTable('jobs')
      .set({ state, resultJson: JSON.stringify(result), errorJson: error ? JSON.stringify(error) : null, endedAt: new Date().toISOString() })
      .where('id', '=', jobId)
      .execute();
  }
}
