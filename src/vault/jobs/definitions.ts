import type { Logger } from '../../core/log.js';
import type { RefugeError } from '../../core/errors.js';
import type { Transaction } from 'kysely';
import type { Database } from '../db/schema.js';

/**
 * A job is a long-running operation made of ordered tasks. The engine records each task's state and progress in
 * the database as it goes; after a restart (of this process or on another one that takes the job's lease over)
 * a job continues with its first task that has not succeeded, so every task must be idempotent (safe to run
 * again after it was interrupted).
 *
 *   queued --claim--> running --last task--> succeeded
 *     ^                 |  |  \--task throws--> failed --restart--> queued
 *     |                 |  \--cancel--> cancelled --restart--> queued
 *     +--resume(input)--waiting  (a task asked for input, e.g. a manual approval)
 */

export const JOB_STATES = ['queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const ENDED_JOB_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled'];
export const TASK_STATES = ['pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'] as const;
export type TaskState = (typeof TASK_STATES)[number];

export interface JobInfo<P = unknown> {
  id: string;
  vaultId: string;
  type: string;
  replicationId: string | null;
  params: P;
}

export interface TaskContext<P = unknown> {
  job: JobInfo<P>;
  /** Results shared by the job's tasks and shown to the user; saved after every task. */
  result: Record<string, unknown>;
  /** Reports the running task's progress (0..1) and what it is doing; saved at most a few times a second. */
  progress(fraction: number, message?: string): void;
  /** The answer given to this task when the job was resumed after `waitForInput`; undefined before. */
  input: unknown;
  /**
   * Parks the job as `waiting` with `prompt` shown to the user, and ends this run of the task; the task runs
   * again, with `input` set, once someone resumes the job. Never returns.
   */
  waitForInput(prompt: string): never;
  /** Aborted when the job is cancelled, its lease is lost, or the vault shuts down. */
  signal: AbortSignal;
  log: Logger;
}

export interface TaskDefinition<P = unknown> {
  name: string;
  run(ctx: TaskContext<P>): Promise<void>;
}

export interface JobDefinition<P = unknown> {
  type: string;
  tasks: TaskDefinition<P>[];
  /**
   * A job whose tasks depend on its parameters (a recovery plan's groups and actions): the tasks of one job,
   * computed from its parameters when it is created and again on every run, so it must be deterministic.
   * When set, `tasks` is ignored.
   */
  tasksFor?(params: P): TaskDefinition<P>[];
  /** Runs once the last task succeeded. Must be idempotent. */
  onSucceeded?(ctx: TaskContext<P>): Promise<void>;
  /** Runs when a task failed or the job was cancelled, with the error. Must be idempotent. */
  onFailed?(ctx: TaskContext<P>, error: RefugeError): Promise<void>;
  /**
   * Runs inside the transaction that re-queues a failed or cancelled job (restart); throws to refuse (e.g. the
   * replication has moved on). Without it, jobs cannot be restarted.
   */
  onRestart?(trx: Transaction<Database>, job: JobInfo<P>): Promise<void>;
}

/** The tasks of one job of definition `def` with `params`. */
export function tasksOf<P>(def: JobDefinition<P>, params: P): TaskDefinition<P>[] {
  return def.tasksFor ? def.tasksFor(params) : def.tasks;
}

/** Thrown by `ctx.waitForInput`; the engine turns it into the `waiting` state. */
export class WaitForInput extends Error {
  constructor(readonly prompt: string) {
    super(`waiting for input: ${prompt}`);
  }
}

export interface TaskView {
  seq: number;
  name: string;
  state: TaskState;
  progress: number;
  message: string | null;
  input: unknown;
  /** How many times the task was started (more than 1 after a crash or a restart). */
  attempts: number;
  startedAt: string | null;
  endedAt: string | null;
}

export interface JobView {
  id: string;
  vaultId: string;
  type: string;
  replicationId: string | null;
  state: JobState;
  /** Overall progress 0..1: finished tasks plus the running task's fraction, over the task count. */
  progress: number;
  params: unknown;
  result: Record<string, unknown>;
  error: { code: string; message: string; hint?: string } | null;
  cancelRequested: boolean;
  attempts: number;
  requestedBy: string | null;
  /** The vault process that runs the job, or ran it last. */
  ranBy: string | null;
  createdAt: string;
  startedAt: string | null;
  endedAt: string | null;
  tasks: TaskView[];
}

/** Told when a job ends (events, alerts, metrics); errors are logged, never fail the job. */
export interface JobListener {
  jobEnded(job: JobView): Promise<void>;
}
