import type { Kysely, Transaction } from 'kysely';
import { notFound } from '../../core/errors.js';
import type { Database } from '../db/schema.js';
import type { JobState, JobView, TaskState } from './definitions.js';

type Db = Kysely<Database> | Transaction<Database>;

const parse = (text: string | null): unknown => (text === null ? undefined : JSON.parse(text));

/** Reads jobs with their tasks as JobViews, one query for the jobs and one for all their tasks. */
export async function loadJobs(db: Db, ids: string[]): Promise<JobView[]> {
  if (ids.length === 0) return [];
  // Jobs first, then their tasks: tasks only move forward, so a job read as ended shows its tasks ended too (two
  // queries at once on PostgreSQL's pool could read the tasks before the job had ended and the job after).
  const rows = await db.selectFrom('jobs').selectAll().where('id', 'in', ids).execute();
  const tasks = await db.selectFrom('jobTasks').selectAll().where('jobId', 'in', ids).orderBy('jobId').orderBy('seq').execute();
  const byJob = new Map<string, typeof tasks>();
  for (const t of tasks) byJob.set(t.jobId, [...(byJob.get(t.jobId) ?? []), t]);
  const views = new Map(
    rows.map((row) => {
      const ts = byJob.get(row.id) ?? [];
      const done = ts.reduce((n, t) => n + (t.state === 'succeeded' ? 1 : t.state === 'running' ? t.progress : 0), 0);
      const view: JobView = {
        id: row.id,
        vaultId: row.vaultId,
        type: row.type,
        replicationId: row.replicationId,
        state: row.state as JobState,
        progress: ts.length === 0 ? 1 : done / ts.length,
        params: JSON.parse(row.paramsJson) as unknown,
        result: JSON.parse(row.resultJson) as Record<string, unknown>,
        error: row.errorJson ? (JSON.parse(row.errorJson) as JobView['error']) : null,
        cancelRequested: Number(row.cancelRequested) === 1,
        attempts: Number(row.attempts),
        requestedBy: row.requestedBy,
        ranBy: row.leaseOwner,
        createdAt: row.createdAt,
        startedAt: row.startedAt,
        endedAt: row.endedAt,
        tasks: ts.map((t) => ({
          seq: t.seq,
          name: t.name,
          state: t.state as TaskState,
          progress: t.progress,
          message: t.message,
          input: parse(t.inputJson),
          attempts: Number(t.attempts),
          startedAt: t.startedAt,
          endedAt: t.endedAt,
        })),
      };
      return [row.id, view] as const;
    }),
  );
  return ids.flatMap((id) => views.get(id) ?? []);
}

export async function loadJob(db: Db, id: string): Promise<JobView> {
  const [job] = await loadJobs(db, [id]);
  if (!job) throw notFound('job', id);
  return job;
}
