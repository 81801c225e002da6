import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { RefugeError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { silentLogger, type Logger } from '../../core/log.js';
import { dialectOf } from '../db/connect.js';
import type { Database } from '../db/schema.js';
import { ENDED_JOB_STATES, tasksOf, type JobDefinition, type JobListener, type JobState, type JobView } from './definitions.js';
import { loadJob, loadJobs } from './job-rows.js';
import { JobRun } from './job-run.js';

type Db = Kysely<Database> | Transaction<Database>;

export interface JobEngineOptions {
  log?: Logger;
  /** This process in leases. A restarted process with the same owner takes its own jobs back at once. */
  owner?: string;
  /** How long a claim holds without renewal; a process that dies loses its jobs to others after this. */
  leaseSeconds?: number;
  /** How often to look for jobs created by other processes or left behind by dead ones. */
  pollMs?: number;
  /** Jobs this process runs at once. */
  concurrency?: number;
  listeners?: JobListener[];
}

export interface JobFilter {
  replicationId?: string;
  state?: JobState;
  type?: string;
  limit?: number;
  /** Only jobs created before this job (the previous page's last id): keyset pagination, newest first. */
  before?: string;
}

/**
 * Runs jobs recorded in the vault database, shared safely by every vault process on that database. `create`
 * records a job inside the caller's transaction (so a job exists exactly when the state change that asked for
 * it happened); `start` claims queued jobs, and running jobs whose lease expired, with `FOR UPDATE SKIP LOCKED`
 * where the database has it and a compare-and-set either way, then renews the lease while it runs them. Every
 * write a run makes is fenced by its lease, so a process that lost its lease cannot overwrite its successor.
 */
export class JobEngine {
  readonly owner: string;
  private readonly definitions = new Map<string, JobDefinition<unknown>>();
  private readonly running = new Map<string, JobRun>();
  private readonly log: Logger;
  private readonly leaseMs: number;
  private readonly concurrency: number;
  private readonly pollMs: number;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private scanning: Promise<void> | undefined;
  private rescan = false;

  constructor(
    private readonly db: Kysely<Database>,
    definitions: JobDefinition<never>[],
    private readonly options: JobEngineOptions = {},
  ) {
    for (const d of definitions) this.definitions.set(d.type, d);
    this.owner = options.owner ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.log = options.log ?? silentLogger;
    this.leaseMs = (options.leaseSeconds ?? 30) * 1000;
    this.concurrency = options.concurrency ?? 8;
    this.pollMs = options.pollMs ?? 1000;
  }

  async create(db: Db, input: { vaultId: string; type: string; replicationId: string | null; params: unknown; requestedBy?: string }): Promise<string> {
    const def = this.definitions.get(input.type);
    if (!def) throw new RefugeError('internal', `no job definition for type '${input.type}'`);
    const id = newId('job');
    // The job and its tasks appear together: a job claimed (by any process) between the two inserts would find no
    // task, "succeed" at once, and then get its tasks, never run.
    if (!db.isTransaction) return db.transaction().execute((trx) => this.create(trx, input));
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
        leaseOwner: null,
        leaseExpiresAt: null,
        cancelRequested: 0,
        attempts: 0,
        requestedBy: input.requestedBy ?? null,
      })
      .execute();
    await db
      .insertInto('jobTasks')
      .values(tasksOf(def, input.params).map((t, seq) => ({ jobId: id, seq, name: t.name, state: 'pending', progress: 0, message: null, startedAt: null, endedAt: null, inputJson: null, attempts: 0 })))
      .execute();
    return id;
  }

  /** Starts claiming jobs: now, whenever `kick` is called, and every `pollMs`. */
  async start(): Promise<void> {
    this.started = true;
    this.timer = setInterval(() => this.kick(), this.pollMs);
    this.timer.unref();
    this.kick();
  }

  /** Asks the engine to look for claimable jobs now (call after creating or resuming one). */
  kick(): void {
    if (!this.started) return;
    if (this.scanning) {
      this.rescan = true;
      return;
    }
    this.scanning = this.claimAndRun()
      .catch((err: unknown) => this.log.error({ err }, 'job queue scan failed'))
      .finally(() => {
        this.scanning = undefined;
        if (this.rescan) {
          this.rescan = false;
          this.kick();
        }
      });
  }

  /** Stops claiming and interrupts running jobs, handing them back to the queue for this or another process. */
  async stop(): Promise<void> {
    this.started = false;
    clearInterval(this.timer);
    await this.scanning;
    const runs = [...this.running.values()];
    for (const r of runs) r.interrupt();
    await Promise.allSettled(runs.map((r) => r.done));
  }

  /** Resolves when the job has ended (for tests and in-process callers). */
  async waitFor(jobId: string, timeoutMs = 600_000, until: (j: JobView) => boolean = (j) => ENDED_JOB_STATES.includes(j.state)): Promise<JobView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const job = await this.get(jobId);
      if (until(job)) {
        // A job this process runs has ended: let its end be told (events, alerts) before answering, so a caller that
        // looks for them next finds them.
        if (ENDED_JOB_STATES.includes(job.state)) await this.running.get(jobId)?.done.catch(() => undefined);
        return job;
      }
      if (Date.now() > deadline) throw new RefugeError('unavailable', `job ${jobId} still ${job.state} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  get(jobId: string): Promise<JobView> {
    return loadJob(this.db, jobId);
  }

  async list(vaultId: string, f: JobFilter = {}): Promise<JobView[]> {
    let q = this.db.selectFrom('jobs').select('id').where('vaultId', '=', vaultId);
    if (f.replicationId) q = q.where('replicationId', '=', f.replicationId);
    if (f.state) q = q.where('state', '=', f.state);
    if (f.type) q = q.where('type', '=', f.type);
    if (f.before) q = q.where('id', '<', f.before);
    const ids = await q.orderBy('id', 'desc').limit(f.limit ?? 100).execute();
    return loadJobs(this.db, ids.map((r) => r.id));
  }

  /**
   * Asks a job to stop. A queued or waiting job is cancelled by the next claim (its failure handler runs there);
   * a running one is aborted by its process at the next lease renewal (at once when it runs here).
   */
  async cancel(jobId: string): Promise<JobView> {
    const job = await this.get(jobId);
    if (ENDED_JOB_STATES.includes(job.state)) {
      throw new RefugeError('operation_not_allowed', `job ${jobId} already ${job.state}; there is nothing to cancel`, { details: { allowedOperations: this.allowed(job) } });
    }
    await this.db
      .updateTable('jobs')
      .set((eb) => ({ cancelRequested: 1, state: eb.case().when('state', '=', 'waiting').then('queued').else(eb.ref('state')).end() }))
      .where('id', '=', jobId)
      .where('state', 'not in', ENDED_JOB_STATES)
      .execute();
    this.running.get(jobId)?.cancel();
    this.kick();
    return this.get(jobId);
  }

  /** Gives a waiting job's task its input (e.g. `{ approved: true }`) and queues the job again. */
  async resume(jobId: string, input: unknown): Promise<JobView> {
    await this.db.transaction().execute(async (trx) => {
      const job = await loadJob(trx, jobId);
      const task = job.tasks.find((t) => t.state === 'waiting');
      if (job.state !== 'waiting' || !task) {
        throw new RefugeError('operation_not_allowed', `job ${jobId} is ${job.state}, not waiting for input`, { details: { allowedOperations: this.allowed(job) } });
      }
      await trx.updateTable('jobTasks').set({ state: 'pending', inputJson: JSON.stringify(input ?? null) }).where('jobId', '=', jobId).where('seq', '=', task.seq).execute();
      const r = await trx.updateTable('jobs').set({ state: 'queued' }).where('id', '=', jobId).where('state', '=', 'waiting').executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) throw new RefugeError('conflict', `job ${jobId} changed while it was being resumed`);
    });
    this.kick();
    return this.get(jobId);
  }

  /** Queues a failed or cancelled job again; it continues from its first task that has not succeeded. */
  async restart(jobId: string): Promise<JobView> {
    await this.db.transaction().execute(async (trx) => {
      const job = await loadJob(trx, jobId);
      const def = this.definitions.get(job.type);
      if (!def?.onRestart || (job.state !== 'failed' && job.state !== 'cancelled')) {
        const why = def?.onRestart ? `it is ${job.state}` : `jobs of type ${job.type} cannot be restarted`;
        throw new RefugeError('operation_not_allowed', `job ${jobId} cannot be restarted: ${why}`, { details: { allowedOperations: this.allowed(job) } });
      }
      const r = await trx
        .updateTable('jobs')
        .set({ state: 'queued', errorJson: null, endedAt: null, cancelRequested: 0, leaseOwner: null, leaseExpiresAt: null })
        .where('id', '=', jobId)
        .where('state', '=', job.state)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) throw new RefugeError('conflict', `job ${jobId} changed while it was being restarted`);
      await trx.updateTable('jobTasks').set({ state: 'pending', progress: 0 }).where('jobId', '=', jobId).where('state', '!=', 'succeeded').execute();
      await def.onRestart(trx, { id: job.id, vaultId: job.vaultId, type: job.type, replicationId: job.replicationId, params: job.params });
    });
    this.kick();
    return this.get(jobId);
  }

  /** What can be done to a job in its state: cancel, resume, restart. */
  allowed(job: Pick<JobView, 'state' | 'type'>): string[] {
    if (job.state === 'waiting') return ['resume', 'cancel'];
    if (job.state === 'queued' || job.state === 'running') return ['cancel'];
    if ((job.state === 'failed' || job.state === 'cancelled') && this.definitions.get(job.type)?.onRestart) return ['restart'];
    return [];
  }

  private async claimAndRun(): Promise<void> {
    while (this.started && this.running.size < this.concurrency) {
      const id = await this.claim();
      if (!id) return;
      const run = new JobRun(this.db, id, this.definitions, { owner: this.owner, leaseMs: this.leaseMs, log: this.log, listeners: this.options.listeners ?? [] });
      this.running.set(id, run);
      void run.done.finally(() => {
        this.running.delete(id);
        this.kick();
      });
    }
  }

  /** Claims one job: queued, or running under an expired lease (or under this owner's name from a past life). */
  private async claim(): Promise<string | undefined> {
    const now = new Date().toISOString();
    const mine = [...this.running.keys()];
    const rowLocking = dialectOf(this.db).rowLocking;
    return this.db.transaction().execute(async (trx) => {
      let q = trx
        .selectFrom('jobs')
        .select('id')
        .where((eb) =>
          eb.or([
            eb('state', '=', 'queued'),
            eb.and([eb('state', '=', 'running'), eb.or([eb('leaseExpiresAt', 'is', null), eb('leaseExpiresAt', '<', now), eb('leaseOwner', '=', this.owner)])]),
          ]),
        );
      if (mine.length > 0) q = q.where('id', 'not in', mine);
      q = q.orderBy('createdAt').limit(1);
      if (rowLocking) q = q.forUpdate().skipLocked();
      const row = await q.executeTakeFirst();
      if (!row) return undefined;
      const r = await trx
        .updateTable('jobs')
        .set((eb) => ({
          state: 'running',
          leaseOwner: this.owner,
          leaseExpiresAt: new Date(Date.now() + this.leaseMs).toISOString(),
          attempts: eb('attempts', '+', 1),
          startedAt: eb.fn.coalesce('startedAt', eb.val(now)),
        }))
        .where('id', '=', row.id)
        .where((eb) =>
          eb.or([
            eb('state', '=', 'queued'),
            eb.and([eb('state', '=', 'running'), eb.or([eb('leaseExpiresAt', 'is', null), eb('leaseExpiresAt', '<', now), eb('leaseOwner', '=', this.owner)])]),
          ]),
        )
        .executeTakeFirst();
      return Number(r.numUpdatedRows) === 1 ? row.id : undefined;
    });
  }
}
